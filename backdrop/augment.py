"""Training augmentation (METHOD.md): rotation ±15°, shifts ±15 %, shear 0.3, brightness ×[0.8, 1.2].

The geometric transform is drawn once per image and applied to the image *and* its mask through
one sampling grid, so masks stay aligned with images (the companion code masked the augmented
image with a mask computed on the un-augmented one; we must not). Brightness touches the image only.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def uniform(shape, generator, device):
    """U[0, 1) draws from `generator` where it lives (a CPU generator cannot feed a CUDA op),
    then moved to `device`: the same random stream whether training runs on CPU or GPU."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


@dataclass(frozen=True)
class Augment:
    rotation_deg: float = 15.0
    shift: float = 0.15
    shear: float = 0.3
    brightness: tuple = (0.8, 1.2)

    def affine(self, n, generator=None, device=None):
        """N × 2 × 3 affine matrices in the normalised coordinates of `affine_grid`."""
        u = lambda lo, hi: lo + (hi - lo) * uniform(n, generator, device)
        a = u(-1, 1) * math.radians(self.rotation_deg)
        s = u(-self.shear, self.shear)
        tx, ty = u(-1, 1) * 2 * self.shift, u(-1, 1) * 2 * self.shift  # [-1,1] spans the image: 2 units
        cos, sin = a.cos(), a.sin()
        # rotation @ shear (x' = x + s·y), then translation
        theta = torch.stack([torch.stack([cos, cos * s - sin, tx], 1),
                             torch.stack([sin, sin * s + cos, ty], 1)], 1)
        return theta

    def __call__(self, x, *aligned, generator=None):
        """Transform `x` (N×C×H×W) and every tensor in `aligned` (e.g. masks, N×1×H×W) with
        the same per-image geometry; returns (x, *aligned)."""
        n = x.shape[0]
        theta = self.affine(n, generator, x.device)
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        # The image: what moves into the frame continues its edge, the studio backdrop, not black
        # (an MNIST image's edge is 0, so there it is exactly zero padding). Masks: what moves in
        # is not the object, so zeros (a learned mask need not be 0 at the frame, and "border"
        # would grow the object there).
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        lo, hi = self.brightness
        gain = lo + (hi - lo) * uniform((n, 1, 1, 1), generator, x.device)
        parts = [(out * gain).clamp(0, 1)]
        if aligned:
            stacked = torch.cat(aligned, 1)
            moved = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            parts += list(moved.split([t.shape[1] for t in aligned], 1))
        return tuple(parts)
