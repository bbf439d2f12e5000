"""`backdrop store`: an sqlite MLflow store copied to durable storage while it is written, and
brought back after its disk is wiped — with a real MLflow store and the real command line."""
import os
import signal
import subprocess
import sys
import time

import mlflow

from conftest import REPO, assert_one_line_error, run_cli


def make_runs(uri, n, start=0):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("e") or client.get_experiment(client.create_experiment("e"))
    for i in range(start, start + n):
        run = client.create_run(exp.experiment_id, run_name=f"run{i}")
        client.log_metric(run.info.run_id, "val/worst", i / 10, step=1)
        client.set_terminated(run.info.run_id, "FINISHED")


def runs_of(uri):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("e")
    return sorted((r.info.run_name, r.info.status, r.data.metrics["val/worst"])
                  for r in client.search_runs([exp.experiment_id]))


def wipe(db):
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(f"{db}{suffix}"):
            os.remove(f"{db}{suffix}")


def test_kept_store_comes_back_after_its_disk_is_wiped(tmp_path):
    db, copy = tmp_path / "head" / "mlflow.db", tmp_path / "durable" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    make_runs(uri, 2)
    keeper = subprocess.Popen([sys.executable, "-m", "platform.store", "keep", "--store", str(db),
                               "--copy", str(copy), "--every", "0.2"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)                                  # the keeper starts and takes its first copy
        make_runs(uri, 3, start=2)                     # written while it keeps
        time.sleep(2)
    finally:
        keeper.send_signal(signal.SIGTERM)
        out, _ = keeper.communicate(timeout=60)
    assert keeper.returncode == 0, out
    assert "backed up" in out
    before = runs_of(uri)
    assert len(before) == 5

    wipe(db)                                           # the head's disk is gone
    restored = run_cli("platform.store", "restore", "--store", str(db), "--copy", str(copy))
    assert restored.returncode == 0 and "restored" in restored.stdout, restored.stderr
    # Read through a new connection, as the restarted server does (MLflow caches one per URI,
    # and that one still holds the wiped file): the same file, spelled another way.
    uri = f"sqlite:///{db.parent}/./{db.name}"
    assert runs_of(uri) == before

    # a second restore keeps the live database rather than overwrite newer records
    make_runs(uri, 1, start=5)
    again = run_cli("platform.store", "restore", "--store", str(db), "--copy", str(copy))
    assert again.returncode == 0 and "kept" in again.stdout and len(runs_of(uri)) == 6


def test_first_start_has_nothing_to_restore(tmp_path):
    proc = run_cli("platform.store", "restore", "--store", str(tmp_path / "mlflow.db"),
                   "--copy", str(tmp_path / "none" / "mlflow.db"))
    assert proc.returncode == 0 and "nothing to restore" in proc.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_store_bad_input_is_one_line(tmp_path):
    damaged = tmp_path / "copy.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    assert_one_line_error(run_cli("platform.store", "restore", "--store", str(tmp_path / "m.db"),
                                  "--copy", str(damaged)), str(damaged))
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "m.db.partial").exists()
    assert_one_line_error(run_cli("platform.store", "backup", "--store", "http://127.0.0.1:5000",
                                  "--copy", str(damaged)), "only an sqlite store")
    assert_one_line_error(run_cli("platform.store", "backup", "--store", str(tmp_path / "none.db"),
                                  "--copy", str(damaged)), "no such MLflow database")
