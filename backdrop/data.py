"""Datasets: MNIST, Fashion-MNIST, scikit-learn's digits, and a user's own images.

Every loader returns `Splits` (train / val / test) of `Split(x, y)`, where `x` is float32
N×C×S×S in [0, 1] and `y` is int64 N. The built-in data sets are 1×32×32 with an exactly-zero
background border; a user's data set (`user_data.py`: `folder:PATH`, `npz:PATH`) has its own
channels (1 or 3), side S (32, 64 or 128) and classes.

- "mnist", "fashion-mnist": the four original gzipped IDX files. They are read from a local
  directory (`data_dir`, else the env var BACKDROP_DATA_DIR), which may be the dataset folder
  itself or a parent holding `mnist/` and `fashion-mnist/`; without one they are downloaded
  from the official mirrors into `cache_dir()/<name>/`. Every file is sha256-checked against the
  official value (once per process per file). The 28×28 images are zero-padded by 2 px.
  The test set is the official one; val is a seeded `val_fraction` (default 1/12, so 5000 for
  MNIST) of the official training set.
- "digits": scikit-learn's bundled 8×8 digits (1797 images, no download, the offline default).
  Scaled to [0, 1], resized to 28×28 bilinearly, values below 0.05 set to exactly 0 (the test
  backgrounds take `x > 0` as the digit's support, so the background must be exactly 0), then
  padded like MNIST. Test is a fixed 20 % (a permutation with seed 0, whatever `seed` is, so
  test results stay comparable across seeds); val is carved from the remaining 80 % with `seed`,
  by default 15 % of all images (`val_fraction` = 0.15 / 0.8 of the remainder); the rest is train.

Reading and splitting are two steps: `read_source` reads a data set once (a `Source`: the pool
that train and val are carved from, and the test set), and `make_splits` carves a seed's splits
from it. A driver reads the Source and Ray carries it to every worker, trial and task, so none of
them reads the files or needs them on its own disk; `load_dataset` is both steps in one call.

All bad input (unknown name, missing directory or file, checksum mismatch, corrupt gzip, bad
IDX header, failed download) raises a one-line `UserError` naming the file or thing.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from .dataset_names import USER_KINDS, check_dataset_name
from .errors import UserError

IMAGE_SIZE = 32

# Keys of fetch_idx_files() and the official file names.
FILES = {
    "train-images": "train-images-idx3-ubyte.gz",
    "train-labels": "train-labels-idx1-ubyte.gz",
    "t10k-images": "t10k-images-idx3-ubyte.gz",
    "t10k-labels": "t10k-labels-idx1-ubyte.gz",
}
SHA256 = {
    "mnist": {
        "train-images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
# Tried in order; a module-level list so tests can point it at a dead port.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
DOWNLOAD_TIMEOUT_S = 30

_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0  # fixed: the digits test set must not move with `seed`
_DIGITS_VAL_FRACTION = 0.15 / (1 - _DIGITS_TEST_FRACTION)  # 15 % of all images
_DIGITS_THRESHOLD = 0.05
_IDX_MAGICS = {0x0801: 1, 0x0803: 3}  # uint8 labels (1-D), uint8 images (3-D)
_HINT = "pass --data-dir DIR or set BACKDROP_DATA_DIR to a folder holding the four .gz files"


@dataclass
class Split:
    x: torch.Tensor  # float32 N×C×S×S in [0, 1]
    y: torch.Tensor  # int64 N


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    name: str
    n_classes: int = 10
    class_names: tuple = tuple(str(k) for k in range(10))


def cache_dir() -> pathlib.Path:
    """Where downloads go: env BACKDROP_CACHE_DIR, else ~/.cache/backdrop."""
    env = os.environ.get("BACKDROP_CACHE_DIR")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "backdrop"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path | None:
    """The argument, else env BACKDROP_DATA_DIR, as an absolute path; None means the download
    cache. Absolute because Ray runs workers and tasks in working directories of their own, where
    a relative path the user typed would name another folder."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get("BACKDROP_DATA_DIR")
    return pathlib.Path(chosen).expanduser().resolve() if chosen else None


def data_dir_for_workers(data_dir: str | os.PathLike | None) -> str | None:
    """What a driver sends to Ray workers: the data folder it resolved (flag or environment),
    absolute, so that no worker reads its own working directory or environment instead."""
    root = resolve_data_dir(data_dir)
    return str(root) if root is not None else None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ---------------------------------------------------------------- IDX files

def read_idx_gz(path) -> np.ndarray:
    """Parse a gzipped IDX file of uint8 images (N×H×W) or labels (N); the array is read-only."""
    path = pathlib.Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"IDX file {path} does not exist") from None
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read {path}: truncated or corrupt gzip ({_one_line(e)}); "
                        "delete it and download it again") from None
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic not in _IDX_MAGICS:
        shown = f"0x{magic:08x}" if magic is not None else f"only {len(data)} bytes"
        raise UserError(f"{path} is not a uint8 IDX image or label file (magic {shown}, "
                        "expected 0x00000803 or 0x00000801); replace it with the original file")
    ndim = _IDX_MAGICS[magic]
    offset = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != offset + int(np.prod(dims)):
        raise UserError(f"{path}: IDX header says shape {dims} but the file holds "
                        f"{len(data) - offset} data bytes; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    # Keyed on size and mtime so a replaced file is read again; read-only arrays are safe to share.
    return read_idx_gz(path)


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) whose sha256 matched


def _file_key(path: pathlib.Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: pathlib.Path, expected: str, name: str) -> None:
    key = _file_key(path)
    if key in _VERIFIED:
        return
    got = _sha256(path)
    if got != expected:
        raise UserError(f"checksum mismatch for {path}: expected sha256 {expected}, got {got}; "
                        f"it is not the official {name} file, delete it and download it again")
    _VERIFIED.add(key)


def _download(name: str, key: str, dest: pathlib.Path) -> None:
    """Fetch one file from the mirrors into dest, atomically: temp file, sha256, os.replace."""
    fname, expected, failures = FILES[key], SHA256[name][key], []
    for base in MIRRORS[name]:
        url = base.rstrip("/") + "/" + fname
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{fname}.", suffix=".part")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                while chunk := resp.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != expected:
                failures.append(f"{url}: sha256 {h.hexdigest()} != expected {expected}")
                continue
            os.replace(tmp, dest)
            _VERIFIED.add(_file_key(dest))
            return
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
            failures.append(f"{url}: {_one_line(e)}")
        finally:
            # Never leave a partial file behind, also on Ctrl-C.
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise UserError(f"could not download {fname} for {name} into {dest.parent}: mirrors "
                    f"unreachable or bad ({'; '.join(failures)}); {_HINT}")


def _local_dataset_dir(root: pathlib.Path, name: str) -> pathlib.Path:
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist; {_HINT} (or its parent "
                        f"holding {name}/), or leave it unset to download")
    # The parent layout wins: a dataset folder of another name would fail its checksums anyway.
    for d in (root / name, root):
        if any((d / f).exists() for f in FILES.values()):
            return d
    raise UserError(f"data directory {root} holds no {name} files; put the four .gz files "
                    f"({', '.join(FILES.values())}) in {root} or in {root / name}")


def fetch_idx_files(name: str, data_dir=None, download: bool = True) -> dict[str, pathlib.Path]:
    """Paths of the four verified .gz files of `name`, from the local dir or the download cache."""
    if name not in SHA256:
        raise UserError(f"no IDX files for dataset {name!r}; choose from {', '.join(SHA256)}")
    root = resolve_data_dir(data_dir)
    paths = {}
    if root is not None:
        folder = _local_dataset_dir(root, name)
        for key, fname in FILES.items():
            path = folder / fname
            if not path.is_file():
                raise UserError(f"{name} file {path} is missing; put the official {fname} there")
            _verify(path, SHA256[name][key], name)
            paths[key] = path
        return paths
    folder = cache_dir() / name
    for key, fname in FILES.items():
        path = folder / fname
        if path.is_file():
            _verify(path, SHA256[name][key], name)
        elif not download:
            raise UserError(f"{name} file {path} is not in the cache and downloading is off; "
                            f"{_HINT}, or allow downloading")
        else:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create cache directory {folder} ({_one_line(e)}); "
                                "set BACKDROP_CACHE_DIR to a writable folder") from None
            _download(name, key, path)
        paths[key] = path
    return paths


# ---------------------------------------------------------------- tensors and splits

def _split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, limit: int | None) -> Split:
    """Split of images[idx]: N×S×S×C uint8 (a user's images, already square) as N×C×S×S, or
    N×h×w (uint8 0..255 or float 0..1, a built-in data set) zero-padded to N×1×32×32."""
    idx = idx[:limit]
    if images.ndim == 4:
        x = torch.from_numpy(np.ascontiguousarray(images[idx].transpose(0, 3, 1, 2))).float().div_(255)
        return Split(x, torch.from_numpy(labels[idx].astype(np.int64)))
    h, w = images.shape[1:]
    top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
    # Pad before converting: padding the 4× smaller uint8 array is the cheap order. The new
    # array also means the cached read-only arrays are never handed out.
    padded = np.zeros((len(idx), IMAGE_SIZE, IMAGE_SIZE), dtype=images.dtype)
    padded[:, top:top + h, left:left + w] = images[idx]
    x = torch.from_numpy(padded).unsqueeze(1).float()
    if images.dtype == np.uint8:
        x.div_(255)
    return Split(x, torch.from_numpy(labels[idx].astype(np.int64)))


def _carve(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) into (rest, carved ≈ fraction·n), each in original order."""
    perm = np.random.RandomState(seed).permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def _read_pair(paths, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (_read_cached(*_file_key(paths[k])) for k in (images_key, labels_key))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(f"{paths[images_key]} holds images of shape {images.shape[1:]}, "
                        "expected 28×28; replace it with the original file")
    if labels.ndim != 1 or len(labels) != len(images) or (len(labels) and labels.max() > 9):
        raise UserError(f"{paths[labels_key]} does not hold {len(images)} labels in 0..9 "
                        f"matching {paths[images_key].name}; replace it with the original file")
    return images, labels


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # lazy: sklearn is slow to import

    d = load_digits()
    x = torch.from_numpy(d.images).float().div_(16).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = torch.where(x < _DIGITS_THRESHOLD, torch.zeros(()), x).clamp_(max=1.0)
    images, labels = x.squeeze(1).numpy(), d.target   # float in [0, 1]: uint8 would lose precision
    images.flags.writeable = labels.flags.writeable = False   # cached: shared, never written
    return images, labels


@dataclass
class Source:
    """A data set as read from disk, before its seeded splits: the pool that train and val are
    carved from, and the test set. A driver reads it once and Ray carries it to every worker and
    trial (the object store), so no worker reads the files or needs them on its own disk."""
    name: str
    pool_x: np.ndarray   # N×h×w (uint8 0..255 or float 0..1), or N×S×S×C uint8 (read-only when cached)
    pool_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    val_fraction: float  # the data set's default share of the pool carved out as val
    val_x: np.ndarray | None = None     # a fixed val set (the user's val/ folder), not carved by seed
    val_y: np.ndarray | None = None
    n_classes: int = 10
    class_names: tuple = tuple(str(k) for k in range(10))


def read_source(name: str, data_dir: str | None = None, download: bool = True, image_size: int = 0) -> Source:
    """Read `name` from disk (or the bundled digits); see the module docstring for the sources.
    `image_size` (0: from the data) is the side a user's images are resized to; the built-in data
    sets are 32 px."""
    check_dataset_name(name)
    kind, _, path = name.partition(":")
    if kind in USER_KINDS and path:
        from .user_data import read_user_source
        return read_user_source(kind, path, image_size)
    if image_size not in (0, IMAGE_SIZE):
        raise UserError(f"image_size {image_size} applies to your own images (folder:, npz:); {name} is "
                        f"{IMAGE_SIZE} px: drop image_size")
    if name == "digits":
        images, labels = _load_digits()
        pool, test_idx = _carve(len(images), _DIGITS_TEST_FRACTION, _DIGITS_TEST_SEED)
        return Source(name, images[pool], labels[pool], images[test_idx], labels[test_idx], _DIGITS_VAL_FRACTION)
    paths = fetch_idx_files(name, data_dir, download)
    train_x, train_y = _read_pair(paths, "train-images", "train-labels")
    test_x, test_y = _read_pair(paths, "t10k-images", "t10k-labels")
    return Source(name, train_x, train_y, test_x, test_y, 1 / 12)


def _check_split_arguments(val_fraction, limit):
    if val_fraction is not None and not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction {val_fraction} is out of range; use a value in [0, 1)")
    if limit is not None and limit < 1:
        raise UserError(f"limit {limit} must be a positive number of images (or None for all)")


def make_splits(source: Source, *, val_fraction: float | None = None, seed: int = 0,
                limit: int | None = None) -> Splits:
    """Carve a seeded val split from the source's pool (None: the data set's default share);
    `limit` keeps the first `limit` images of each split after splitting (for quick runs)."""
    _check_split_arguments(val_fraction, limit)
    if source.val_x is not None:                  # the user's own val set: nothing to carve
        train = _split(source.pool_x, source.pool_y, np.arange(len(source.pool_x)), limit)
        val = _split(source.val_x, source.val_y, np.arange(len(source.val_x)), limit)
    else:
        rest, val_idx = _carve(len(source.pool_x), source.val_fraction if val_fraction is None else val_fraction, seed)
        train = _split(source.pool_x, source.pool_y, rest, limit)
        val = _split(source.pool_x, source.pool_y, val_idx, limit)
    return Splits(train, val, _split(source.test_x, source.test_y, np.arange(len(source.test_x)), limit),
                  source.name, source.n_classes, source.class_names)


def load_dataset(name: str, data_dir: str | None = None, *, val_fraction: float | None = None,
                 seed: int = 0, limit: int | None = None, download: bool = True, image_size: int = 0) -> Splits:
    """Load `name` as train/val/test Splits: `read_source`, then `make_splits`. `data_dir` is
    unused by digits and a user's own images."""
    _check_split_arguments(val_fraction, limit)     # before a read or a download
    return make_splits(read_source(name, data_dir, download, image_size), val_fraction=val_fraction, seed=seed,
                       limit=limit)


def source_of(cfg: dict, data_dir: str | None = None) -> Source:
    """The Source a run's config names (its dataset and image_size)."""
    return read_source(cfg["dataset"], data_dir, image_size=cfg["image_size"])


def splits_of(cfg: dict, data_dir: str | None = None, source: Source | None = None) -> Splits:
    """A run's splits: its seed's carving of `source` (the driver's copy), else of the files."""
    return make_splits(source if source is not None else source_of(cfg, data_dir), seed=cfg["seed"],
                       limit=cfg["limit"] or None)
