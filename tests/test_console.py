"""The `backdrop` console script: the same commands as `python -m platform.…`, from any directory
(here: a folder outside the checkout), with the shipped specs and search spaces found."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error

BACKDROP = shutil.which("backdrop", path=str(Path(sys.executable).parent)) or shutil.which("backdrop")
pytestmark = pytest.mark.skipif(BACKDROP is None, reason="the backdrop console script is not installed (pip install -e .)")


def backdrop(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([BACKDROP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_commands_are_listed_and_take_their_flags(tmp_path):
    top = backdrop("--help", cwd=tmp_path)
    assert top.returncode == 0
    for name in ("train", "sweep", "ablate", "report", "store"):
        assert f"  {name} " in top.stdout
    train = backdrop("train", "--help", cwd=tmp_path)
    assert train.returncode == 0 and train.stdout.startswith("usage: backdrop train") and "--ascent-per-descent" in train.stdout
    assert_one_line_error(backdrop("nope", cwd=tmp_path), "unknown command 'nope'")
    assert_one_line_error(backdrop("train", "--method", "nope", cwd=tmp_path), "backdrop train: error")


def test_shipped_specs_and_spaces_are_found_outside_the_checkout(tmp_path):
    listed = backdrop("ablate", "--list", cwd=tmp_path)
    assert listed.returncode == 0 and "mask_off" in listed.stdout, listed.stderr
    # a shipped search space by the README's relative path, from a folder that has no such file
    # (--trials 0 stops at validation, before Ray starts)
    bad = backdrop("sweep", "--space", "search_spaces/quick.yaml", "--trials", "0", cwd=tmp_path)
    assert_one_line_error(bad, "--trials must be at least 1")
