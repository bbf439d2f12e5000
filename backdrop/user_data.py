"""A user's own images as a data set: `folder:PATH` and `npz:PATH`.

- `folder:PATH`: one sub-folder per class of PNG/JPEG (or any format Pillow reads) files, the
  class names being the sub-folders' names in sorted order. With `train/` and `test/` folders
  (and optionally `val/`) of that layout, those are the splits; otherwise a fixed 20 % of the
  images (seed 0, whatever the run's seed) is the test set, as for digits.
- `npz:PATH`: arrays `x` (N×H×W or N×H×W×C, C 1 or 3, uint8) and `y` (integer labels 0..K−1);
  optional `x_test`/`y_test` and `x_val`/`y_val` are those splits, and `class_names` names the K
  classes (else "0".."K−1"). Without `x_test`, the fixed 20 % rule above.

Any number of classes (at least 2), grayscale or RGB (never mixed), any size: each image is
padded to a square by repeating its edge pixels (the studio backdrop goes on, the object is not
cropped), then resized to `image_size` (32, 64 or 128: the networks halve it three times and the
generator's tiles double a 4-px seed). The default is the largest of those that no image is
smaller than. Val is carved from the training images by the run's seed (15 %) unless the data
set has its own. The result is a `data.Source`, read once by a driver and carried by Ray to
every worker, so no worker needs the user's files on its own disk.

Bad input (an unknown path, an empty folder, one class, a file that is not an image, mixed
grayscale and RGB, images smaller than the requested size, labels out of range) is a one-line
`UserError` naming the file or the class.
"""
from __future__ import annotations

import functools
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

from .data import Source, _carve
from .dataset_names import IMAGE_SIZES, check_image_size, files_signature
from .errors import UserError

TEST_FRACTION = 0.2
TEST_SEED = 0                 # fixed: the test set must not move with a run's seed
ORDER_SEED = 0                # fixed: a split's order must not move with a run's seed either
VAL_FRACTION = 0.15
SPLIT_FOLDERS = ("train", "val", "test")


def read_user_source(kind: str, path: str, image_size: int = 0) -> Source:
    check_image_size(image_size)
    root = pathlib.Path(path).expanduser().resolve()
    key = (kind, str(root), image_size)
    if not root.exists():
        if key in _READ:
            # Read by this process before the files went: a driver keeps its copy (the workers
            # never had the files; Ray carries this copy to them).
            return _READ[key]
        raise UserError(f"{kind}:{path}: {root} does not exist; give the path of your "
                        f"{'folder of class sub-folders' if kind == 'folder' else '.npz file'}")
    # Keyed on every file's size and mtime, so changed images are read again.
    _READ[key] = _read_cached(kind, str(root), image_size, files_signature(root))
    return _READ[key]


_READ: dict = {}      # (kind, path, image_size) -> the Source this process last read there


@functools.lru_cache(maxsize=4)
def _read_cached(kind, root, image_size, signature):
    root = pathlib.Path(root)
    splits = _read_folder(root) if kind == "folder" else _read_npz(root)
    names = splits.pop("class_names")
    images = [img for x, _ in splits.values() for img in x]
    side = _chosen_size(images, image_size, root)
    arrays = {k: _mixed(_resized(x, side), np.asarray(y, dtype=np.int64)) for k, (x, y) in splits.items()}
    for a in (a for pair in arrays.values() for a in pair):
        a.flags.writeable = False                 # cached and shared: never written
    label = f"{kind}:{root}"
    if "test" in arrays:
        (pool_x, pool_y), (test_x, test_y) = arrays["train"], arrays["test"]
    else:
        x, y = arrays["train"]
        pool, test = _carve(len(x), TEST_FRACTION, TEST_SEED)     # digits' rule for its fixed test set
        pool_x, pool_y, test_x, test_y = x[pool], y[pool], x[test], y[test]
    val_x, val_y = arrays.get("val", (None, None))
    return Source(label, pool_x, pool_y, test_x, test_y, VAL_FRACTION, val_x, val_y, len(names), tuple(names))


def _mixed(x, y):
    """Files come class by class; a fixed shuffle mixes the classes, so that `limit` (the first N
    images of a split) and the figures' first test images hold every class, not the first few."""
    order = np.random.RandomState(ORDER_SEED).permutation(len(y))
    return x[order], y[order]


# ----------------------------------------------------------------------------- folders

def _read_folder(root: pathlib.Path) -> dict:
    if not root.is_dir():
        raise UserError(f"folder:{root} is a file, not a folder; give a folder with one sub-folder of images "
                        "per class (or use npz:PATH for an .npz file)")
    layouts = [d for d in SPLIT_FOLDERS if (root / d).is_dir()]
    if layouts and not {"train", "test"} <= set(layouts):
        raise UserError(f"{root} has {'/'.join(layouts)}/ but not both train/ and test/; give both "
                        f"(val/ is optional), or put the class folders directly in {root}")
    parts = {d: root / d for d in layouts} if layouts else {"train": root}
    names = _class_names(parts["train"])
    out, where = {}, []
    for split, folder in parts.items():
        extra = sorted(set(_class_names(folder, need_two=False)) - set(names))
        if extra:
            raise UserError(f"{folder / extra[0]}: class {extra[0]!r} is not in {parts['train']}; every class "
                            "must have training images")
        xs, ys = [], []
        for label, name in enumerate(names):
            files = sorted(f for f in (folder / name).iterdir() if f.is_file() and not f.name.startswith(".")) \
                if (folder / name).is_dir() else []
            if not files and split == "train":
                raise UserError(f"{folder / name} holds no images; every class needs training images")
            xs += [_read_image(f) for f in files]
            ys += [label] * len(files)
            where += files
        if not xs:
            raise UserError(f"{folder} holds no images in its class folders; fill it or remove it")
        out[split] = (xs, ys)
    _same_channels([img for x, _ in out.values() for img in x], where)
    out["class_names"] = names
    return out


def _class_names(folder: pathlib.Path, need_two=True) -> list[str]:
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if need_two and len(names) < 2:
        found = f"only the class {names[0]!r}" if names else "no class sub-folders"
        raise UserError(f"{folder} has {found}; put each class's images in a sub-folder of its own, at least two classes")
    return names


def _read_image(path: pathlib.Path) -> np.ndarray:
    """H×W×C uint8 (C = 1 for grayscale, 3 for colour; alpha and palettes become RGB)."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)          # a camera's rotation, as a viewer shows it
            if im.mode.startswith("I;16"):
                a = np.array(im, dtype=np.float64) / 257     # 16-bit grayscale, scaled to 8 bits
                a = a.round().clip(0, 255).astype(np.uint8)
            elif im.mode in ("I", "F"):
                raise UserError(f"{path} holds 32-bit {'integer' if im.mode == 'I' else 'float'} pixels; "
                                "save it as an 8- or 16-bit PNG or a JPEG")
            else:
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    # Transparent parts show the image's own edge colour rather than what hides under them.
                    im = im.convert("RGBA")
                    bg = Image.new("RGBA", im.size, tuple(np.array(im)[0, 0, :3]) + (255,))
                    im = Image.alpha_composite(bg, im)
                gray = im.mode in ("1", "L", "LA")
                a = np.array(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        what = "is not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else \
            f"cannot be read ({' '.join(str(e).split()) or type(e).__name__})"
        raise UserError(f"{path} {what}; remove it or replace it with a PNG or JPEG") from None
    return a[:, :, None] if a.ndim == 2 else a


def _same_channels(images, where):
    """`where[i]` names images[i] (its file, or its array)."""
    kinds = {img.shape[2] for img in images}
    if len(kinds) > 1:
        gray = next(w for w, img in zip(where, images) if img.shape[2] == 1)
        rgb = next(w for w, img in zip(where, images) if img.shape[2] == 3)
        raise UserError(f"the data set mixes grayscale ({gray}) and colour ({rgb}) images; convert them all "
                        "to one kind")


# ----------------------------------------------------------------------------- .npz files

def _read_npz(path: pathlib.Path) -> dict:
    if path.is_dir():
        raise UserError(f"npz:{path} is a folder; give an .npz file (or use folder:PATH for a folder of images)")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise UserError(f"{path} is one array (.npy), not an .npz of arrays x and y; write it with "
                            "numpy.savez(path, x=images, y=labels)")
        with z:
            arrays = {k: z[k] for k in z.files}
    except UserError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"{path} is not a readable .npz file ({' '.join(str(e).split()) or type(e).__name__}); "
                        "write it with numpy.savez") from None
    for need in ("x", "y"):
        if need not in arrays:
            raise UserError(f"{path} has no array {need!r} (it has {', '.join(sorted(arrays)) or 'none'}); "
                            "save the images as x and the labels as y")
    names = arrays.pop("class_names", None)
    out = {}
    for split, (kx, ky) in {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}.items():
        if (kx in arrays) != (ky in arrays):
            raise UserError(f"{path} has {kx if kx in arrays else ky} without {ky if kx in arrays else kx}; "
                            "give both or neither")
        if kx in arrays:
            out[split] = _npz_split(path, kx, arrays[kx], ky, arrays[ky])
    _same_channels([x[0] for x, _ in out.values()], [f"{path} {k}" for k in out])
    n = int(max(int(y.max()) for _, y in out.values())) + 1
    if names is not None:
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(names).ravel().tolist()]
        if n > len(names):
            raise UserError(f"{path}: a label is {n - 1}, but class_names names {len(names)} classes (0..{len(names) - 1})")
        n = len(names)
    if n < 2:
        raise UserError(f"{path}: every label is 0; a classifier needs at least two classes")
    missing = sorted(set(range(n)) - set(np.unique(out["train"][1]).tolist()))
    if missing:
        raise UserError(f"{path}: class {missing[0]} has no training images in y; every class needs some")
    out["class_names"] = names or [str(k) for k in range(n)]
    return out


def _npz_split(path, kx, x, ky, y):
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise UserError(f"{path}: {kx} has shape {x.shape}; expected N×H×W (grayscale) or N×H×W×C with C 1 or 3")
    if x.dtype != np.uint8:
        raise UserError(f"{path}: {kx} is {x.dtype}; expected uint8 pixels 0..255 (x.astype(np.uint8))")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: {ky} must be {len(x)} integer labels, one per image of {kx}; got shape "
                        f"{y.shape}, dtype {y.dtype}")
    if len(x) == 0:
        raise UserError(f"{path}: {kx} holds no images")
    if y.min() < 0:
        raise UserError(f"{path}: {ky} has the label {int(y.min())}; labels are 0..K-1")
    return list(x), y


# ----------------------------------------------------------------------------- one size

def _chosen_size(images, image_size, root) -> int:
    smallest = min(images, key=lambda a: max(a.shape[:2]))
    side = max(smallest.shape[:2])                # an image is padded to a square of its longer side
    if image_size:
        if side < image_size:
            raise UserError(f"{root}: an image is {smallest.shape[1]}×{smallest.shape[0]} px, smaller than "
                            f"image_size {image_size}; lower image_size or use larger images")
        return image_size
    fitting = [s for s in IMAGE_SIZES if s <= side]
    if not fitting:
        raise UserError(f"{root}: an image is {smallest.shape[1]}×{smallest.shape[0]} px; the networks need at "
                        f"least {IMAGE_SIZES[0]}×{IMAGE_SIZES[0]}: use larger images")
    return fitting[-1]


def _resized(images, side) -> np.ndarray:
    """N×side×side×C uint8: each image padded to a square with its edge pixels, then resized
    (antialiased bilinear; an image already of that size is kept as it is)."""
    out = np.empty((len(images), side, side, images[0].shape[2]), dtype=np.uint8)
    for i, a in enumerate(images):
        h, w = a.shape[:2]
        if h != w:
            d = abs(h - w)
            pad = ((d // 2, d - d // 2), (0, 0)) if h < w else ((0, 0), (d // 2, d - d // 2))
            a = np.pad(a, pad + ((0, 0),), mode="edge")
        if a.shape[0] != side:
            t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
            t = F.interpolate(t, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            a = t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        out[i] = a
    return out
