"""Where the object is: the pixels that differ from the studio backdrop.

The test and validation suites lay a pattern everywhere but near the object, and the `heuristic`
mask is the object itself; both need the object's support. It is keyed per image and channel
against the backdrop seen on the image's border (a 2-px frame): a plane fitted to the frame by
least squares (a studio backdrop may brighten gently across the frame), and a tolerance of
`TOLERANCE_SIGMAS` robust standard deviations (1.4826 × the median absolute deviation) of the
frame's residuals (its sensor noise; the median ignores the few frame pixels an object may
touch). A pixel is the object's where any channel is farther from the plane than the tolerance.

A black backdrop (MNIST, Fashion-MNIST and digits: an exactly-zero frame) fits the zero plane
with tolerance 0, so the support is exactly `x > 0`, as it always was for them.
"""
import functools

import torch

FRAME = 2
TOLERANCE_SIGMAS = 4.0


@functools.lru_cache(maxsize=8)
def _frame_fit(h: int, w: int, device: str):
    """(the frame's pixel indices, the pseudo-inverse of the frame's [1, row, col] design, the
    whole image's design), for H×W images."""
    r, c = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    on_frame = (r < FRAME) | (r >= h - FRAME) | (c < FRAME) | (c >= w - FRAME)
    grid = torch.stack([torch.ones_like(r), r / h, c / w], -1).reshape(-1, 3)
    frame = on_frame.reshape(-1).nonzero().squeeze(1)
    return frame.to(device), torch.linalg.pinv(grid[frame]).to(device), grid.to(device)


def object_support(x: torch.Tensor) -> torch.Tensor:
    """Bool N×1×H×W: True where any channel of x differs from the image's keyed backdrop."""
    n, ch, h, w = x.shape
    frame, pinv, grid = _frame_fit(h, w, str(x.device))
    flat = x.reshape(n, ch, h * w).to(torch.float64)
    border = flat[:, :, frame]                                    # N×C×B
    plane = (border @ pinv.T) @ grid.T                            # N×C×HW
    residual = border - plane[:, :, frame]
    mad = (residual - residual.median(-1, keepdim=True).values).abs().median(-1, keepdim=True).values
    tolerance = TOLERANCE_SIGMAS * 1.4826 * mad                   # N×C×1
    return ((flat - plane).abs() > tolerance).any(1, keepdim=True).reshape(n, 1, h, w)
