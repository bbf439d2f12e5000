"""Where the object is: the pixels that differ from the studio backdrop.

The test and validation suites lay a pattern everywhere but near the object, and the `heuristic`
mask is the object itself; both need the object's support. The mask phase shows f the backdrop
itself wherever the mask is off (`mask_fill`). It is keyed per image and channel
against the backdrop seen on the image's border (a 2-px frame): a plane fitted to the frame (a
studio backdrop may brighten gently across it), fitted twice, the second time without the frame
pixels the first fit calls outliers (an object touching the frame), and a tolerance of
`TOLERANCE_SIGMAS` robust standard deviations (1.4826 × the median absolute deviation) of the
kept pixels' residuals (sensor noise), at least half a grey level. A pixel is the object's where
any channel is farther from the plane than the tolerance.

A black backdrop (MNIST, Fashion-MNIST, digits: a frame at least half exactly 0, in augmented
batches too) is the zero plane with tolerance 0, so the support is exactly `x > 0`, as it always
was for them.
"""
import functools
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Keyed:
    """A batch keyed once: each image's backdrop plane and tolerance (float64, N×C×HW and N×C×1),
    for every use a training step makes of them."""
    x: torch.Tensor
    plane: torch.Tensor
    tolerance: torch.Tensor

    def support(self) -> torch.Tensor:
        """Bool N×1×H×W: True where any channel of x differs from the image's keyed backdrop."""
        n, ch, h, w = self.x.shape
        far = (self.x.detach().reshape(n, ch, h * w).to(torch.float64) - self.plane).abs() > self.tolerance
        return far.any(1, keepdim=True).reshape(n, 1, h, w)

    def backdrop(self) -> torch.Tensor:
        """N×C×H×W in x's dtype: the studio backdrop each image is keyed against, the fitted plane
        seen everywhere, as if the object were lifted out; exactly 0 on a black backdrop."""
        return self.plane.reshape(self.x.shape).to(self.x.dtype)


def key(x: torch.Tensor) -> Keyed:
    return Keyed(x, *_keyed(x))


def object_support(x: torch.Tensor) -> torch.Tensor:
    """Bool N×1×H×W: True where any channel of x differs from the image's keyed backdrop."""
    return key(x).support()


def keyed_backdrop(x: torch.Tensor) -> torch.Tensor:
    """N×C×H×W in x's dtype: the backdrop each image is keyed against (Keyed.backdrop)."""
    return key(x).backdrop()


def _keyed(x):
    """(plane N×C×HW, tolerance N×C×1), both float64: the backdrop fitted to each image's frame and
    how far from it a pixel may lie and still be backdrop."""
    n, ch, h, w = x.shape
    frame, pinv, grid = _frame_fit(h, w, str(x.device))
    flat = x.detach().reshape(n, ch, h * w).to(torch.float64)
    border = flat[:, :, frame]                                    # N×C×B
    design = grid[frame]                                          # B×3
    plane = (border @ pinv.T) @ grid.T                            # first fit: every frame pixel
    residual = border - plane[:, :, frame]
    keep = residual.abs() <= _tolerance(residual, border)         # N×C×B: the backdrop's own pixels
    weighted = design[None, None] * keep[..., None]               # N×C×B×3
    normal = weighted.transpose(-1, -2) @ design                  # N×C×3×3
    coef = torch.linalg.solve(normal + 1e-12 * torch.eye(3, dtype=normal.dtype, device=normal.device),
                              (weighted.transpose(-1, -2) @ (border * keep)[..., None]))   # zero when the kept are 0
    plane = (coef.squeeze(-1) @ grid.T)                           # N×C×HW
    residual = torch.where(keep, border - plane[:, :, frame], torch.nan)
    tolerance = _tolerance(residual, torch.where(keep, border, torch.nan))
    # A frame mostly exactly 0 is a black backdrop that an object (or an augmentation's shift)
    # reaches into: the backdrop is 0 and so is the tolerance, as on an all-zero frame.
    black = border.median(-1, keepdim=True).values == 0
    return torch.where(black, 0.0, plane), torch.where(black, 0.0, tolerance)


def _tolerance(residual, border):
    """N×C×1: TOLERANCE_SIGMAS robust deviations of the residuals (NaN: left out), at least half
    a grey level, except on an exactly-zero frame (a black backdrop), where it is 0."""
    centred = residual - residual.nanmedian(-1, keepdim=True).values
    mad = centred.abs().nanmedian(-1, keepdim=True).values
    tolerance = TOLERANCE_SIGMAS * 1.4826 * mad
    black = torch.nan_to_num(border.abs(), nan=0.0).amax(-1, keepdim=True) == 0
    return torch.where(black, tolerance, tolerance.clamp_min(0.5 / 255))
