"""Mask utilities: the mask generator's penalties, binarisation, the heuristic mask, compositing,
and the mask sources the game composites with (`MASK_SOURCES`, one named entry each)."""
import torch

from .keying import object_support


def area_penalty(m, area, squared=False):
    """relu(mean(m̂) − area): the mask may cover `area` of the image for free."""
    excess = torch.relu(m.mean((1, 2, 3)) - area)
    return (excess ** 2 if squared else excess).mean()


def total_variation(m):
    """Mean absolute difference of neighbouring mask pixels along both axes."""
    return (m[..., 1:, :] - m[..., :-1, :]).abs().mean() + (m[..., :, 1:] - m[..., :, :-1]).abs().mean()


def otsu_thresholds(m, bins=64):
    """Per-image Otsu threshold of N×1×H×W values in [0, 1], vectorised over the batch."""
    n = m.shape[0]
    idx = (m.reshape(n, -1).clamp(0, 1) * (bins - 1)).round().long()
    hist = torch.zeros(n, bins, device=m.device).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float))
    p = hist / hist.sum(1, keepdim=True)
    centers = torch.linspace(0, 1, bins, device=m.device)
    w0 = p.cumsum(1)
    mu = (p * centers).cumsum(1)
    between = (mu[:, -1:] * w0 - mu) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    between[:, -1] = -1                                     # a threshold above everything splits nothing
    return centers[between.argmax(1)] + 0.5 / (bins - 1)    # foreground is strictly above the bin


def binarize(m, how, area=0.2):
    """Hard mask from a soft one: 'otsu', '0.5', 'quantile' (the top `area` of each image) or 'none'."""
    if how == "none":
        return m
    if how == "0.5":
        t = torch.full((m.shape[0],), 0.5, device=m.device)
    elif how == "otsu":
        t = otsu_thresholds(m)
    elif how == "quantile":
        t = torch.quantile(m.flatten(1), 1 - area, dim=1)
    else:
        raise ValueError(f"unknown binarisation {how!r}")
    return (m > t.view(-1, 1, 1, 1)).float()


def heuristic_mask(x):
    """The no-network mask: the object's keyed support (pixels > 0 on a black backdrop)."""
    return object_support(x).to(x.dtype)


def composite(x, m, b):
    """x̃ = m̂ ⊙ x + (1 − m̂) ⊙ b̂."""
    return m * x + (1 - m) * b


def lift_object(keyed, m, fill):
    """What the mask phase shows f: the masked pixels of x (`keyed`: keying.key(x)), and elsewhere
    the studio backdrop (`fill="backdrop"`) or black. f, trained on studio images, knows the object
    on its own backdrop; on a light backdrop a black fill is a stranger image than a black
    silhouette on the backdrop, and f_m learns the inverted mask. On a black backdrop both fills
    are x*m exactly."""
    if fill == "black":
        return keyed.x * m
    return composite(keyed.x, m, keyed.backdrop())


def polarity(m, keyed):
    """Whether a label-free mask found the object or its backdrop: the share of the mask's mass on
    the keyed object (`mask_on_object`; `keyed`: keying.key(x)) against the object's share of the
    image (`object_share`, what a mask blind to the object would score). Below it, the mask
    prefers the backdrop."""
    support = keyed.support().to(m.dtype)
    return {"mask_on_object": ((m * support).sum() / m.sum().clamp_min(1e-12)).item(),
            "object_share": support.mean().item()}


# Mask sources: (algorithm, x) -> the N x 1 x H x W mask the game composites with, no gradients.
# A new source is an entry here and a choice of `mask` in hparams.py, not an edit of the game.
def unet_mask(alg, x):
    """The U-Net f_m's mask, binarised as `binarize` says."""
    with torch.no_grad():
        return binarize(alg.f_m(x), alg.cfg["binarize"], alg.cfg["mask_area"])


MASK_SOURCES = {
    "unet": unet_mask,
    "heuristic": lambda alg, x: heuristic_mask(x),
    "none": lambda alg, x: torch.full_like(x[:, :1], alg.cfg["mask_blend"]),   # a constant blend
}
