"""Shared test fixtures: paths, a tiny config, a CLI runner. Tests use real Ray, MLflow and data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Absolute: CI sets the relative ../shared/data, and tests copy, link and pass it from other folders.
SHARED_DATA = Path(os.environ.get("BACKDROP_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def tiny_config(**overrides):
    """A few-second run on the offline digits data: small widths, short phases, no augmentation."""
    from backdrop.hparams import make_config
    base = dict(dataset="digits", widths=[8, 16, 32], dense=32, gen_width=8, batch_size=32,
                epochs_f=1, epochs_mask=1, epochs_adv=1, augment=False)
    base.update(overrides)
    return make_config(base)


def trained_record(cfg, data_dir=None):
    """A job's whole record, trained in this process (what a Ray task returns), for tests that
    fill a store the way the ablation driver does."""
    from backdrop.data import splits_of
    from backdrop.job import head, train_record
    splits = splits_of(cfg, data_dir)
    return train_record(cfg, splits, head(cfg, splits, data_dir))


def run_cli(*args, cwd=REPO, env=None, timeout=600):
    """Run `python -m <args>` from the repo root the way a user does; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONPATH", None)   # as a user runs it: backdrop installed, repo root as cwd
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(proc, *needles):
    """A user error: exit status 2, exactly one line on stderr naming the problem, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def logged_model(client, run_id):
    """The MLflow Model named `model` that a run logged (a LoggedModel: the UI's Models column), or None."""
    experiment = client.get_run(run_id).info.experiment_id
    found = [m for m in client.search_logged_models([experiment], filter_string="name = 'model'", max_results=1000)
             if m.source_run_id == run_id]
    return found[0] if found else None


@pytest.fixture(scope="session")
def digits():
    from backdrop.data import load_dataset
    return load_dataset("digits")


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def two_trial_sweep(space, tmp_path, **flags):
    """Run a 2-trial sweep of `space_path` in this process, on a local Ray instance of its own;
    check both trials and the parent finished in MLflow, none with an error tag; return the runs."""
    import ray
    from mlflow import MlflowClient

    from backdrop import sweep
    from backdrop.search_space import load_space
    space = space if hasattr(space, "params") else load_space(space)      # a SearchSpace, or its file
    opts = sweep.new_options(space, {"name": "copy", "storage_path": str(tmp_path / "ray"), "no_register": True,
                                     "tracking_uri": f"sqlite:///{tmp_path / 'b.db'}", **flags})
    try:
        summary = sweep.run_sweep(opts, device="cpu")
    finally:
        ray.shutdown()
    assert len(summary["rows"]) == 2 and all(r["completed"] for r in summary["rows"])
    client = MlflowClient(f"sqlite:///{tmp_path / 'b.db'}")
    runs = client.search_runs([client.get_experiment_by_name("backdrop-sweeps").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert not any("backdrop.error" in r.data.tags for r in runs)
    return runs
