"""The fixed test backgrounds of Table 1, validation backgrounds of other families, the
salt-and-pepper noise sweep, a bank of real photographs (METHOD.md, "The test backgrounds"), and
random symmetries and colours of generated backgrounds.

Every pattern is a deterministic binary image of size S x S (1 = on, 0 = off). A pattern is laid
over an image by `apply_pattern`: the image's support (`x > 0` in any channel) is dilated by a
disk of radius 2 (`halo`); pixels outside that halo take the pattern's value in every channel,
the object and its halo keep theirs.

Model selection must use `VAL_FAMILIES` (or clean data) only; `TEST_FAMILIES` are for the final
report. The two sets share no name and no pattern. The validation families are of two kinds:
six fixed shapes (one pattern each), and thirteen *stroke* families (`STROKE_FAMILIES`: rings,
arcs, segments at three scales, curves, and rings and arcs gathered around the object at three
scales), each a bank of seeded random drawings laid one per image, so that validation sees
stroke-like clutter of every shape and scale rather than one drawing.
"""
from __future__ import annotations

import functools
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.draw import bezier_curve, circle_perimeter, line
from skimage.morphology import disk

from .errors import UserError
from .keying import object_support

TEST_FAMILIES = ("stripes", "board", "border", "circles", "clock", "random")
# A colour data set's test suite: the six in colour, and photographs of the world (WORLD_PHOTOS).
COLOUR_TEST_FAMILIES = TEST_FAMILIES + ("photos",)
SHAPE_FAMILIES = ("hlines", "grid", "dots", "rings", "speckle", "waves")
STROKE_FAMILIES = ("ring_s", "ring_m", "ring_l", "arc_s", "arc_m", "arc_l",
                   "seg_s", "seg_m", "seg_l", "curve", "around_s", "around_m", "around_l")
VAL_FAMILIES = SHAPE_FAMILIES + STROKE_FAMILIES
# Stroke families also scored by their weakest single drawing, laid over every image as a test
# family lays its one pattern: a narrow hole (one arrangement of arcs the model misreads) is
# otherwise averaged away by the family's other drawings. Validation reports it as "<family>_fixed".
FIXED_DRAWING_FAMILIES = ("around_s", "around_m", "around_l")
NOISE_RATES = tuple([round(0.01 * i, 2) for i in range(10)] + [round(0.1 * i, 1) for i in range(1, 11)])

RANDOM_RATE, RANDOM_SEED = 0.25, 0      # the test family "random"
SPECKLE_RATE, SPECKLE_SEED = 0.15, 1    # the validation family "speckle"
HALO_RADIUS = 2


# ----------------------------------------------------------------------------- patterns
def salt_and_pepper(rate: float, size: int = 32, seed: int = 0) -> np.ndarray:
    """A fixed S x S pattern with exactly round(rate*S*S) pixels set to 1.

    The pixels are the first k of a permutation drawn from `seed`, so for one seed the patterns
    are nested: a higher rate switches on more pixels and keeps the lower rate's ones.
    """
    size = _check_size(size)
    if not 0.0 <= float(rate) <= 1.0:
        raise UserError(f"salt-and-pepper rate must be in [0, 1], got {rate}")
    n = size * size
    k = int(math.floor(float(rate) * n + 0.5))
    flat = np.zeros(n, dtype=np.float32)
    flat[np.random.default_rng(seed).permutation(n)[:k]] = 1.0
    return flat.reshape(size, size)


def _grid(size):
    return np.mgrid[0:size, 0:size]  # rows, cols


def _circles(size, centres, radii):
    p = np.zeros((size, size), dtype=np.float32)
    for (r, c) in centres:
        for rad in radii:
            rr, cc = circle_perimeter(int(r), int(c), int(rad), shape=(size, size))
            p[rr, cc] = 1.0
    return p


def _stripes(S):
    # lines row = col + b for b = -S+1, -S+11, ...; 2 px thick (b and b+1); period 10.
    row, col = _grid(S)
    return (np.mod(row - col + S - 1, 10) < 2).astype(np.float32)


def _board(S):
    # 6 px squares, grid origin at (-2, -2), top-left square black.
    row, col = _grid(S)
    return (((row + 2) // 6 + (col + 2) // 6) % 2).astype(np.float32)


def _border(S):
    p = np.ones((S, S), dtype=np.float32)
    p[2:S - 2, 2:S - 2] = 0.0
    return p


def _circles4(S):
    return _circles(S, [(8, 8), (S - 8, 8), (8, S - 8), (S - 8, S - 8)], [6])


def _clock(S):
    h = S // 2
    p = _circles(S, [(h, h)], [h - 1, h - 2])
    band = slice(h - 1, h + 2)          # 3 px wide: S/2-1 .. S/2+1
    p[0:7, band] = 1.0                  # 12 o'clock: rows 0..6
    p[band, 0:7] = 1.0                  # 9 o'clock: cols 0..6
    p[S - 6:S, band] = 1.0              # 6 o'clock: rows S-6..S-1
    p[band, S - 6:S] = 1.0              # 3 o'clock: cols S-6..S-1
    return p


def _random(S):
    return salt_and_pepper(RANDOM_RATE, S, seed=RANDOM_SEED)


# Validation families: other geometry, never one of the six above.
def _hlines(S):
    row, _ = _grid(S)
    return (np.mod(row - 1, 8) < 2).astype(np.float32)           # horizontal, 2 px, period 8


def _thin_grid(S):
    row, col = _grid(S)
    return ((np.mod(row, 7) == 3) | (np.mod(col, 7) == 3)).astype(np.float32)   # 1 px, period 7


def _dots(S):
    row, col = _grid(S)
    return ((np.mod(row, 6) >= 4) & (np.mod(col, 6) >= 4)).astype(np.float32)   # 2x2 dots, period 6


def _rings(S):
    centre = (round(0.3 * S), round(0.7 * S))                    # off-centre
    return _circles(S, [centre], range(3, 2 * S, 5))


def _speckle(S):
    return salt_and_pepper(SPECKLE_RATE, S, seed=SPECKLE_SEED)


def _waves(S):
    row, col = _grid(S)
    shift = np.rint(2.5 * np.sin(2 * np.pi * col / 12.0)).astype(int)
    return (np.mod(row + shift, 9) < 2).astype(np.float32)      # wavy horizontal bands


# Stroke families: generic primitives drawn at random by a rule fixed before any result was seen
# (the rule, not a look at a test family, decides every drawing). Scales are octaves of the image
# size S, so no band is tuned to a known failure: radii in [S/16, S/8), [S/8, S/4), [S/4, S/2)
# for rings and arcs (2-4, 4-8, 8-16 px at S = 32), lengths in [S/8, S/4), [S/4, S/2), [S/2, S)
# for straight segments. Each drawing has 2-6 strokes, each 1 or 2 px wide, centred anywhere in
# the image; arcs span 90-270 degrees from a random start; curves are quadratic Beziers whose
# three control points lie anywhere in the image.
# The "around" families draw the same rings and arcs (a fair coin picks which) at the same three
# radius bands, but centred on a circle about the image centre, at a random angle and a distance
# in [S/4, S/2): several arcs gathered round the object, the clutter that sits beside its strokes
# (a 1 or a 7 between two arcs can read as a 3 or an 8), rather than anywhere in the frame.
STROKE_BANK = 256           # drawings per family; image i of a split gets drawing i mod 256
STROKE_SEED = 20261201
_STROKE_RULES = {
    "ring_s": ("ring", (1 / 16, 1 / 8)), "ring_m": ("ring", (1 / 8, 1 / 4)), "ring_l": ("ring", (1 / 4, 1 / 2)),
    "arc_s": ("arc", (1 / 16, 1 / 8)), "arc_m": ("arc", (1 / 8, 1 / 4)), "arc_l": ("arc", (1 / 4, 1 / 2)),
    "seg_s": ("seg", (1 / 8, 1 / 4)), "seg_m": ("seg", (1 / 4, 1 / 2)), "seg_l": ("seg", (1 / 2, 1)),
    "curve": ("curve", None),
    "around_s": ("around", (1 / 16, 1 / 8)), "around_m": ("around", (1 / 8, 1 / 4)),
    "around_l": ("around", (1 / 4, 1 / 2)),
}
assert tuple(_STROKE_RULES) == STROKE_FAMILIES


def _draw_stroke(p, rng, kind, band):
    S = p.shape[0]
    if kind == "around":
        theta, dist = rng.uniform(0, 2 * np.pi), rng.uniform(S / 4, S / 2)
        r0, c0 = round(S / 2 + dist * np.sin(theta)), round(S / 2 + dist * np.cos(theta))
        kind = "ring" if rng.random() < 0.5 else "arc"
    else:
        r0, c0 = rng.integers(0, S, size=2)
    if kind in ("ring", "arc"):
        lo, hi = band
        rad = int(rng.integers(max(1, round(lo * S)), max(2, round(hi * S))))
        rr, cc = circle_perimeter(int(r0), int(c0), rad)
        if kind == "arc":
            start, span = rng.uniform(0, 2 * np.pi), rng.uniform(np.pi / 2, 3 * np.pi / 2)
            angle = np.mod(np.arctan2(rr - r0, cc - c0) - start, 2 * np.pi)
            rr, cc = rr[angle <= span], cc[angle <= span]
    elif kind == "seg":
        lo, hi = band
        length, theta = rng.uniform(lo * S, hi * S), rng.uniform(0, np.pi)
        r1, c1 = int(round(r0 + length * np.sin(theta))), int(round(c0 + length * np.cos(theta)))
        rr, cc = line(int(r0), int(c0), r1, c1)
    else:
        (r1, c1), (r2, c2) = rng.integers(0, S, size=(2, 2))
        rr, cc = bezier_curve(int(r0), int(c0), int(r1), int(c1), int(r2), int(c2), weight=1.0)
    width = int(rng.integers(1, 3))
    for dr in range(width):             # a 2 px stroke: the 1 px one and its neighbour below
        r = rr + dr
        ok = (r >= 0) & (r < S) & (cc >= 0) & (cc < S)
        p[r[ok], cc[ok]] = 1.0


def _stroke_bank(name, S):
    kind, band = _STROKE_RULES[name]
    rng = np.random.default_rng([STROKE_SEED, STROKE_FAMILIES.index(name), S])
    bank = np.zeros((STROKE_BANK, S, S), dtype=np.float32)
    for p in bank:
        while p.sum() == 0:         # a drawing wholly off the image would be a blank background
            for _ in range(int(rng.integers(2, 7))):
                _draw_stroke(p, rng, kind, band)
    return bank


_MAKERS = {
    "stripes": _stripes, "board": _board, "border": _border,
    "circles": _circles4, "clock": _clock, "random": _random,
    "hlines": _hlines, "grid": _thin_grid, "dots": _dots,
    "rings": _rings, "speckle": _speckle, "waves": _waves,
}
assert tuple(_MAKERS) == TEST_FAMILIES + SHAPE_FAMILIES


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise UserError(f"pattern size must be an integer >= 16, got {size!r}")
    return int(size)


@functools.lru_cache(maxsize=256)
def _patterns_cached(name: str, size: int) -> np.ndarray:
    p = _stroke_bank(name, size) if name in _STROKE_RULES else _MAKERS[name](size)[None]
    p.setflags(write=False)
    return p


def _known(name: str) -> str:
    if name not in _MAKERS and name not in _STROKE_RULES:
        raise UserError(f"unknown background {name!r}; choose one of: {', '.join([*_MAKERS, *_STROKE_RULES])}")
    return name


def family_patterns(name: str, size: int = 32) -> np.ndarray:
    """The family `name` as a read-only K x S x S float32 array of 0s and 1s: K = 1 for a fixed
    family, STROKE_BANK for a stroke family (image i of a suite gets pattern i mod K)."""
    return _patterns_cached(_known(name), _check_size(size))


def family_colours(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The colours a family is drawn in on colour images: (on, off), each RGB in [0, 1], fixed by
    the family's name and at least 0.3 apart on average, so the pattern stays visible."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    while True:
        on, off = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        if np.abs(on - off).mean() >= 0.3:
            return on.astype(np.float32), off.astype(np.float32)


def in_colour(p: torch.Tensor, name: str, channels: int) -> torch.Tensor:
    """K x C x S x S: K patterns (K x S x S, 0 to 1) as C-channel backgrounds. One channel: the
    pattern itself (the grayscale suites, unchanged). Three: the family's two colours mixed by the
    pattern, so a colour model meets coloured stripes, boards and strokes, not only grey ones."""
    if channels == 1:
        return p[:, None]
    on, off = (torch.from_numpy(c).to(p.device, p.dtype)[None, :, None, None] for c in family_colours(name))
    return off + p[:, None] * (on - off)


def pattern(name: str, size: int = 32) -> np.ndarray:
    """The background family `name` as a float32 S x S array of 0s and 1s (a fresh copy); for a
    stroke family, its first drawing."""
    return family_patterns(name, size)[0].copy()


# ----------------------------------------------------------------------------- compositing
def halo(x: torch.Tensor, radius: int = HALO_RADIUS) -> torch.Tensor:
    """Bool N x 1 x S x S: the object's support (keying.object_support: x > 0 on a black
    backdrop) dilated by a disk of `radius`."""
    if x.dim() != 4:
        raise UserError(f"expected images N x C x H x W, got shape {tuple(x.shape)}")
    support = object_support(x).to(torch.float32)
    if radius <= 0:
        return support > 0
    kernel = torch.from_numpy(disk(radius).astype(np.float32)).to(x.device)[None, None]
    return F.conv2d(support, kernel, padding=radius) > 0.5


def _pattern_tensor(x: torch.Tensor, pat) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(pat) if not torch.is_tensor(pat) else pat)
    p = p.to(device=x.device, dtype=x.dtype)
    if tuple(p.shape[-2:]) != tuple(x.shape[-2:]):
        raise UserError(f"pattern of size {tuple(p.shape[-2:])} does not fit images of size "
                        f"{tuple(x.shape[-2:])}")
    return p.reshape(1, 1, *p.shape[-2:])


def apply_pattern(x: torch.Tensor, pat) -> torch.Tensor:
    """x with every pixel outside halo(x) replaced by the pattern's value (in all channels)."""
    keep = halo(x)
    return torch.where(keep, x, _pattern_tensor(x, pat).expand_as(x))


def _image_size(x: torch.Tensor) -> int:
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise UserError(f"expected square images N x C x S x S, got shape {tuple(x.shape)}")
    return int(x.shape[-1])


def build_suite(x: torch.Tensor, families=TEST_FAMILIES, clean: bool = True) -> dict[str, torch.Tensor]:
    """{"clean": x, family: x over that family's pattern, ...}; the size S is taken from x."""
    S = _image_size(x)
    keep = halo(x)
    suite = {"clean": x} if clean else {}
    which = torch.arange(len(x))
    for name in families:
        if name == "photos":        # the world's photographs, a fixed crop per image (colour suites)
            crops = TextureBank(S, x.shape[1], seed=0, names=WORLD_PHOTOS).sample(len(x)).to(x.device, x.dtype)
            suite[name] = torch.where(keep, x, crops)
            continue
        bank = in_colour(torch.tensor(family_patterns(name, S), device=x.device, dtype=x.dtype), name, x.shape[1])
        suite[name] = torch.where(keep, x, bank[which % len(bank)])
    return suite


def noise_suite(x: torch.Tensor, rates=NOISE_RATES, seed: int = 0) -> dict[float, torch.Tensor]:
    """{rate: x over the salt-and-pepper pattern of that rate} (one fixed pattern per rate)."""
    S = _image_size(x)
    keep = halo(x)
    return {float(r): torch.where(keep, x, _pattern_tensor(x, salt_and_pepper(r, S, seed)).expand_as(x))
            for r in rates}


# ----------------------------------------------------------------------------- real photographs
# scikit-image's bundled photographs and textures that load offline (no pooch download).
# "clock" and "checkerboard" are left out on purpose: they resemble the test families.
# They are split in two, so that a colour model's world test has photographs training never saw:
# the `real` background mode crops TRAIN_PHOTOS; the colour test suite's "photos" family crops
# WORLD_PHOTOS (scenes of the world: a kitchen table, a launch pad, a cat, gravel, coins).
TRAIN_PHOTOS = ("camera", "astronaut", "grass", "brick", "text", "moon", "page", "hubble_deep_field",
                "immunohistochemistry", "retina", "cell")
WORLD_PHOTOS = ("coffee", "rocket", "chelsea", "gravel", "coins")
PHOTO_NAMES = TRAIN_PHOTOS + WORLD_PHOTOS


@functools.lru_cache(maxsize=None)
def _load_photo(name: str):
    """HxWx3 or HxW float32 in [0, 1], or None when it cannot be loaded offline."""
    import skimage.data
    from skimage.util import img_as_float32
    fn = getattr(skimage.data, name, None)
    if fn is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = fn()
    except Exception:   # missing optional download (pooch) or data file: skip it
        return None
    img = img_as_float32(np.asarray(img))
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim not in (2, 3):
        return None
    img = np.clip(img, 0.0, 1.0)
    img.setflags(write=False)
    return img


class TextureBank:
    """Random crops of real photographs, for the `real` background mode.

    Each photograph is stored at a few scales (shorter side 2S, 4S, 8S where smaller than the
    original) so crops show textures and objects at several sizes. A crop is a random
    photograph, a random scale, a random position and random horizontal/vertical flips.
    """

    def __init__(self, size: int = 32, channels: int = 1, seed: int = 0, names=TRAIN_PHOTOS):
        from skimage.color import rgb2gray
        self.size = _check_size(size)
        if channels not in (1, 3):
            raise UserError(f"TextureBank supports 1 or 3 channels, got {channels}")
        self.channels = channels
        self.generator = torch.Generator().manual_seed(seed)
        self.names = []
        self.images: list[list[torch.Tensor]] = []     # per photograph, per scale: C x H x W
        S = self.size
        for name in names:
            img = _load_photo(name)
            if img is None:
                continue
            if channels == 1:
                g = rgb2gray(img) if img.ndim == 3 else img
                t = torch.from_numpy(np.array(g, dtype=np.float32, copy=True))[None]
            else:
                a = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
                t = torch.from_numpy(np.array(a.transpose(2, 0, 1), dtype=np.float32, copy=True))
            self.names.append(name)
            self.images.append(self._scales(t, S))
        if not self.images:
            raise UserError("no scikit-image photograph could be loaded for the `real` background "
                            "mode; reinstall scikit-image")

    @staticmethod
    def _scales(t: torch.Tensor, S: int) -> list[torch.Tensor]:
        h, w = t.shape[-2:]
        short = min(h, w)
        out = []
        for target in (2 * S, 4 * S, 8 * S):
            if target < short:
                f = target / short
                hw = (max(S, round(h * f)), max(S, round(w * f)))
                out.append(F.interpolate(t[None], size=hw, mode="area")[0].clamp(0, 1).contiguous())
        if not out:
            if short < S:
                f = S / short
                t = F.interpolate(t[None], size=(max(S, math.ceil(h * f)), max(S, math.ceil(w * f))),
                                  mode="bilinear", align_corners=False)[0].clamp(0, 1)
            out.append(t.contiguous())
        return out

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n x C x S x S float32 crops in [0, 1]."""
        g = self.generator if generator is None else generator
        S = self.size
        out = torch.empty(n, self.channels, S, S, dtype=torch.float32)
        which = torch.randint(len(self.images), (n,), generator=g).tolist()
        u = torch.rand(n, 3, generator=g, dtype=torch.float64).tolist()  # scale, row, col
        flips = torch.rand(n, 2, generator=g).lt(0.5).tolist()
        for i in range(n):
            scales = self.images[which[i]]
            img = scales[min(int(u[i][0] * len(scales)), len(scales) - 1)]
            h, w = img.shape[-2:]
            r = min(int(u[i][1] * (h - S + 1)), h - S)
            c = min(int(u[i][2] * (w - S + 1)), w - S)
            crop = img[:, r:r + S, c:c + S]
            dims = [d for d, f in zip((-1, -2), flips[i]) if f]
            if dims:
                crop = torch.flip(crop, dims)
            out[i] = crop
        return out


# ----------------------------------------------------------------------------- symmetries and colours
def random_symmetries(b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of `b` (N, C, S, S) turned or flipped by one of the square's 8 symmetries,
    drawn per image from `generator`. Differentiable: only pixels move."""
    t = b.transpose(-1, -2)
    views = torch.stack([b, b.flip(-1), b.flip(-2), b.flip(-1, -2),
                         t, t.flip(-1), t.flip(-2), t.flip(-1, -2)])
    which = torch.randint(8, (len(b),), generator=generator).to(b.device)
    return views[which, torch.arange(len(b), device=b.device)]


def random_colours(b: torch.Tensor, generator: torch.Generator, extremes: float = 0.0) -> torch.Tensor:
    """Each image of `b` (N, C, S, S in [0, 1]) recoloured channel by channel: value v becomes
    lo + (hi - lo) * v, with lo and hi drawn uniformly from [0, 1] per image and channel (hi < lo
    inverts the channel). A two-valued pattern comes out in two random colours, the way `in_colour`
    draws a family. Differentiable in `b`.

    `extremes` is the share of images drawn in opposed colours instead: per channel, one end
    from the arcsine distribution (sin^2(pi u / 2), near 0 or 1 more often than not) and the other
    its opposite, 1 - lo. A channel's two ends are then more than 0.9 apart in 29 % of draws
    (uniform ends: 1 %), and all three channels more than 0.8 apart, a pattern near black and
    white in some hue, in 7 % (uniform: under 0.01 %). Uniform ends make such patterns rare, and a
    model that never met them falls on them (docs/RESULTS.md, The probe on world_randconv's
    models). At 0 nothing more is drawn from `generator`: the stream uniform ends alone use."""
    ends = torch.rand((2, b.shape[0], b.shape[1], 1, 1), generator=generator)
    if extremes > 0:
        pushed = torch.rand(b.shape[0], generator=generator) < extremes
        lo = torch.sin(ends[0] * (torch.pi / 2)) ** 2
        ends = torch.where(pushed[None, :, None, None, None], torch.stack([lo, 1 - lo]), ends)
    ends = ends.to(b.device, b.dtype)
    return ends[0] + (ends[1] - ends[0]) * b


# ----------------------------------------------------------------------------- contact sheet
def contact_sheet(x: torch.Tensor, path) -> None:
    """Write a PNG showing one image (1 x C x S x S) on clean + every test and val family.

    Top row: the image as composited; bottom row: the bare pattern. Test families are titled
    in black, validation families in blue.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = torch.as_tensor(x).detach().cpu().to(torch.float32)
    while x.dim() < 4:
        x = x[None]
    x = x[:1]
    S = _image_size(x)
    names = ("clean",) + TEST_FAMILIES + VAL_FAMILIES
    suite = build_suite(x, TEST_FAMILIES + VAL_FAMILIES, clean=True)

    def show(ax, img):
        img = img.clamp(0, 1).numpy()
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(img[:3].transpose(1, 2, 0), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])

    fig = Figure(figsize=(1.5 * len(names), 3.9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(names))
    for j, name in enumerate(names):
        kind = "" if name == "clean" else ("test" if name in TEST_FAMILIES else "val")
        colour = "tab:blue" if kind == "val" else "black"
        show(axes[0, j], suite[name][0])
        axes[0, j].set_title(f"{kind}: {name}" if kind else name, fontsize=9, color=colour)
        if name == "clean":
            show(axes[1, j], halo(x)[0].to(torch.float32))
            axes[1, j].set_title("halo (r=2)", fontsize=8)
        else:
            show(axes[1, j], torch.from_numpy(pattern(name, S))[None])
            axes[1, j].set_title("pattern", fontsize=8, color=colour)
    fig.suptitle(f"Backgrounds, S = {S} (top: composited, bottom: pattern)", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
