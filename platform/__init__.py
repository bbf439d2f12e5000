"""Command-line face of backdrop (`python -m platform.train`, `.sweep`, `.ablate`, `.report`).

Why this file also re-exports the standard library: a top-level package named `platform`
shadows Python's own `platform` module whenever the repo root is on sys.path, and torch, Ray,
MLflow and the interpreter's own modules call `platform.system()`, `platform.machine()`, ...
So we load the stdlib `platform.py` by path and copy its whole API into this package.
Keep code that Ray workers run out of here (they import the stdlib module, and cannot
unpickle anything from this package): the library lives in `backdrop/`.
"""
import importlib.util as _ilu
import os as _os
import sysconfig as _sysconfig

_spec = _ilu.spec_from_file_location(
    "_stdlib_platform", _os.path.join(_sysconfig.get_paths()["stdlib"], "platform.py"))
_stdlib_platform = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_stdlib_platform)

globals().update({k: v for k, v in vars(_stdlib_platform).items()
                  if not k.startswith("__") or k in ("__copyright__", "__version__")})
