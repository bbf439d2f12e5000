"""The YAML files that ship with backdrop — `ablations/`, `search_spaces/`, `configs/` — found in
the installed package (`pip install .`) or at the checkout's root (`pip install -e .`)."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
FOLDERS = ("ablations", "search_spaces", "configs")


def folder(name):
    """The shipped folder `name` (one of FOLDERS)."""
    inside = HERE / name
    return inside if inside.is_dir() else HERE.parent / name


def find(path):
    """A file a user named, as typed (relative to the working directory), else, when it names a
    shipped file (`search_spaces/default.yaml`), the shipped copy: the README's paths work from
    any directory once backdrop is installed."""
    path = Path(path)
    if path.exists() or path.is_absolute() or len(path.parts) < 2 or path.parts[0] not in FOLDERS:
        return path
    shipped = folder(path.parts[0]).joinpath(*path.parts[1:])
    return shipped if shipped.is_file() else path
