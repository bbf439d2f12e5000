"""`python -m platform.train`: one run end to end into a real MLflow store, the model API, and
one-line errors for bad input."""
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from backdrop.api import load_model
from backdrop.data import load_dataset
from backdrop.errors import UserError
from conftest import REPO, SHARED_DATA, assert_one_line_error, logged_model, run_cli, tiny_config

TINY = ["--widths", "8,16,32", "--dense", "32", "--gen-width", "8", "--epochs-f", "2", "--epochs-mask", "1",
        "--epochs-adv", "1", "--augment", "false", "--quiet"]


def test_train_run_is_logged_to_mlflow(tmp_path, tracking_uri):
    proc = run_cli("platform.train", "--method", "adversarial", "--tracking-uri", tracking_uri,
                   "--experiment", "t", "--run-name", "tiny", "--save", str(tmp_path / "m.pt"), *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Test accuracy" in proc.stdout and "stripes" in proc.stdout

    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.data.params["method"] == "adversarial" and run.data.params["lr_b"] == "1e-05"
    assert run.info.status == "FINISHED"
    # Per-epoch curves per phase: 2 classifier epochs, then mask, then adversarial.
    steps = {k: [m.step for m in client.get_metric_history(run.info.run_id, k)]
             for k in ("classifier/loss_f", "mask/loss_mask_ce", "adversarial/loss_b", "val/worst")}
    assert steps == {"classifier/loss_f": [1, 2], "mask/loss_mask_ce": [3], "adversarial/loss_b": [4],
                     "val/worst": [1, 2, 3, 4]}
    for fam in ("clean", "stripes", "board", "border", "circles", "clock", "random", "mean", "worst", "bg_gap"):
        assert f"test/{fam}" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "noise/accuracy")) == 20
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"composites.png", "masks.png", "backgrounds.png", "test_backgrounds.png", "noise_curve.png"} <= artifacts
    assert logged_model(client, run.info.run_id) is not None

    # The logged model, loaded through the public API, reproduces the logged clean accuracy.
    mlflow.set_tracking_uri(tracking_uri)
    model = load_model(f"runs:/{run.info.run_id}/model")
    test = load_dataset("digits").test
    assert model.score(test.x, test.y) == pytest.approx(run.data.metrics["test/clean"])
    assert model(test.x[:5]).shape == (5, 10)
    assert torch.equal(load_model(tmp_path / "m.pt")(test.x[:5]), model(test.x[:5]))


def test_sigterm_ends_the_run_as_killed_and_keeps_its_epochs(tracking_uri):
    """`kill` (or a scheduler's time limit) mid-run: one line, exit 143, the MLflow run KILLED
    (not left RUNNING) with the epochs it finished."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The store is made before the child starts: polling a store the child is still creating would
    # run MLflow's table migrations in two processes at once, and one of them fails.
    client, history = MlflowClient(tracking_uri), []
    client.search_experiments()
    proc = subprocess.Popen([sys.executable, "-m", "platform.train", "--method", "vanilla", "--tracking-uri",
                             tracking_uri, "--experiment", "t", *TINY, "--epochs-f", "500"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not history and time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        try:            # the child creates the experiment and its run: they may not exist yet
            exp = client.get_experiment_by_name("t")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            history = client.get_metric_history(runs[0].info.run_id, "val/worst") if runs else []
        except Exception:
            continue
    assert history, f"no epoch was logged within 240 s (exit status {proc.poll()})"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "platform.train: terminated; finished epochs and runs are kept"
    [run] = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run.info.run_id, "val/worst")) >= len(history)


def test_model_api_rejects_bad_batches(tmp_path):
    # (a trained model's file round trip is test_train_run_is_logged_to_mlflow's; shapes need no training)
    from backdrop.api import save_model
    from backdrop.train import build_algorithm
    cfg = tiny_config(method="vanilla")
    save_model(build_algorithm(cfg, load_dataset("digits", limit=8)), tmp_path / "v.pt")
    model = load_model(tmp_path / "v.pt")
    with pytest.raises(UserError, match="shape"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        model(torch.rand(2, 1, 32, 32) * 255)
    with pytest.raises(UserError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


@pytest.mark.parametrize("args,needles", [
    (["--dataset", "nope"], ["--dataset", "nope"]),
    (["--method", "nope"], ["--method", "nope"]),
    (["--lr-f", "abc"], ["--lr-f"]),
    (["--lr-f", "5"], ["lr_f", "outside"]),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/dir"], ["/nonexistent/dir", "does not exist"]),
    (["--config", "/nonexistent.yaml"], ["/nonexistent.yaml"]),
    (["--storage-path", "/tmp/ckpt"], ["--storage-path", "--workers 2"]),
])
def test_bad_input_is_one_line(args, needles, tmp_path):
    proc = run_cli("platform.train", "--tracking-uri", f"sqlite:///{tmp_path}/x.db", *args)
    assert_one_line_error(proc, *needles)


def test_bad_config_key_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr_f: 0.01\nlearning_rate: 3\n")
    assert_one_line_error(run_cli("platform.train", "--config", str(cfg)), str(cfg), "learning_rate")


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"MNIST files not at {SHARED_DATA}")
@pytest.mark.parametrize("damage", ["checksum", "truncated"])
def test_corrupt_mnist_file_is_one_line(tmp_path, damage):
    data = tmp_path / "mnist"
    shutil.copytree(SHARED_DATA / "mnist", data)
    victim = data / "t10k-labels-idx1-ubyte.gz"
    raw = victim.read_bytes()
    if damage == "checksum":   # a valid gzip with different content
        victim.write_bytes(gzip.compress(gzip.decompress(raw)[:-1] + b"\x07"))
    else:
        victim.write_bytes(raw[: len(raw) // 2])
    proc = run_cli("platform.train", "--dataset", "mnist", "--data-dir", str(data),
                   "--tracking-uri", f"sqlite:///{tmp_path}/x.db")
    assert_one_line_error(proc, "t10k-labels-idx1-ubyte.gz")


def test_commands_started_at_once_on_a_new_store_all_record(tmp_path):
    """Two terminals, one new mlflow.db: MLflow creates a store's tables on each process's first
    use, and processes doing so at once all failed with a traceback. Four at once must all log."""
    code = ("import sys, mlflow; from backdrop import tracking; "
            "uri = tracking.setup(sys.argv[1], 'at-once'); "
            "mlflow.MlflowClient(uri).create_run(mlflow.get_experiment_by_name('at-once').experiment_id)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = [subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{tmp_path / 'mlflow.db'}"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), [err[-1500:] for rc, err in results if rc]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(client.search_runs([client.get_experiment_by_name("at-once").experiment_id])) == 4
