"""`platform/` is both our command line and, for everything else, the standard-library module."""
import os
import subprocess
import sys

from conftest import REPO, run_cli


def test_stdlib_platform_api_from_repo_root():
    code = "import platform, sysconfig; print(platform.system()); print(platform.python_version()); print(platform.machine())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    import platform as here  # the same shim: pytest runs with the repo root on sys.path
    assert out[0] in ("Linux", "Darwin", "Windows")
    assert out[1] == ".".join(map(str, sys.version_info[:3]))
    assert here.__path__, "the repo's platform package, not the stdlib module, is imported here"
    assert here.system() == out[0]


def test_train_help_works():
    proc = run_cli("platform.train", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--method" in proc.stdout and "--ascent-per-descent" in proc.stdout


RAY_SCRIPT = r"""
import pickle, ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

@ray.remote
def call(fn):
    return fn()

# The library's functions run on workers ...
from backdrop.tracking import git_commit
ok = ray.get(call.remote(git_commit))
print("BACKDROP_OK", len(ok) > 0)

# ... but a worker imports the stdlib `platform` at start-up, so anything from platform.* fails
# (here: a function that needs the module platform.train).
from platform import train as cli
try:
    ray.get(call.remote(lambda: cli.__name__))
    print("PLATFORM_OK")
except Exception as e:
    print("PLATFORM_FAILS", type(e).__name__)
ray.shutdown()
"""


def test_ray_workers_import_backdrop_but_not_platform(tmp_path):
    # As a user runs it: from the repo root, with backdrop installed and no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", RAY_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)
    assert "BACKDROP_OK True" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "PLATFORM_FAILS" in proc.stdout, proc.stdout + proc.stderr[-3000:]
