"""What `dataset` and `image_size` may say: the rules a config, a flag or a space file is checked
against before anything is read. No torch here, so a bad value is a one-line error at once."""
import pathlib

from .errors import UserError

DATASETS = ("digits", "mnist", "fashion-mnist")
USER_KINDS = ("folder", "npz")     # `folder:PATH`, `npz:PATH`: a user's own images (user_data.py)
IMAGE_SIZES = (32, 64, 128)        # what a user's images are resized to (0: the largest that fits)


def check_dataset_name(name) -> str:
    """A built-in data set's name, or `folder:PATH` / `npz:PATH`; anything else is a one-line error."""
    if isinstance(name, str):
        kind, sep, path = name.partition(":")
        if name in DATASETS or (sep and kind in USER_KINDS and path):
            return name
    raise UserError(f"'dataset' must be one of {', '.join(DATASETS)}, or your own images as folder:PATH (a "
                    f"sub-folder of images per class) or npz:PATH (arrays x and y); got {name!r}")


def absolute_dataset(name: str) -> str:
    """`folder:PATH` / `npz:PATH` with PATH made absolute (a saved sweep resumes from any folder);
    a built-in name as it is."""
    kind, _, path = check_dataset_name(name).partition(":")
    return f"{kind}:{pathlib.Path(path).expanduser().resolve()}" if kind in USER_KINDS and path else name


def check_image_size(image_size: int) -> int:
    if image_size not in (0, *IMAGE_SIZES):
        raise UserError(f"image_size {image_size} is not supported; use one of {', '.join(map(str, IMAGE_SIZES))} "
                        "(or 0: from the data)")
    return image_size


def files_signature(root: pathlib.Path) -> tuple:
    """Every file under `root` (or `root` itself) with its size and modification time: what a
    user's data set is, for a cache (read again when it changes) and for a run's identity."""
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())


def data_identity(name: str) -> str:
    """For a user's data set, a digest of its files' signature (so a changed folder is a new data
    set, never answered by runs on the old one); for a built-in one, "" (checksums fix its files)."""
    import hashlib
    kind, _, path = check_dataset_name(name).partition(":")
    if kind not in USER_KINDS:
        return ""
    root = pathlib.Path(path).expanduser().resolve()
    signature = files_signature(root) if root.exists() else ()
    return hashlib.sha1(repr(signature).encode()).hexdigest()[:16]
