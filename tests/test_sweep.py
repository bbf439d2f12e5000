"""`python -m platform.sweep` end to end on a local Ray instance: a sweep interrupted after its
first report (Ctrl-C) and continued with --resume ends with exactly the requested trial runs in
MLflow — the interrupted trial resumed from its checkpoint — and its best trial scored."""
import os
import signal
import subprocess
import sys
import time

import mlflow
import torch

from conftest import REPO

TINY_SPACE = """
sweep: {trials: 2, workers: 1, seed: 3}
fixed:
  dataset: digits
  limit: 64
  widths: [8, 16, 32]
  dense: 32
  gen_width: 8
  batch_size: 16
  augment: false
  epochs_f: 1
  epochs_mask: 1
  epochs_adv: 1
lr_f: {loguniform: [1.0e-4, 1.0e-2]}
ascent_per_descent: {choice: [0.5, 1, 2]}
mask_tv: {uniform: [0.0, 0.3]}
"""


def sweep_cmd(tmp_path, *args):
    return [sys.executable, "-m", "platform.sweep", "--storage-path", str(tmp_path / "ray"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "sweeps", *args]


def run_to_end(cmd, env, timeout):
    """subprocess.run, but a run that outlives `timeout` fails the test with the ends of its
    output (where it stopped), not the truncated repr that TimeoutExpired gives."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s; stdout ends:\n{out[-3000:]}\nstderr ends:\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def trial_runs(tmp_path, name):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sweeps")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`backdrop.sweep` = '{name}'")
    return client, [r for r in runs if r.data.tags["backdrop.role"] == "trial"], \
        [r for r in runs if r.data.tags["backdrop.role"] == "sweep"]


def test_interrupted_sweep_resumes_without_duplicate_runs(tmp_path, request):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The store keeper (as cluster.yaml runs it beside the MLflow server) copies the store to
    # "durable storage" while the sweep writes it; at the end the store's disk is wiped.
    copy = tmp_path / "durable" / "mlflow.db"
    keeper = subprocess.Popen([sys.executable, "-m", "platform.store", "keep", "--store", str(tmp_path / "mlflow.db"),
                               "--copy", str(copy), "--every", "1"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    request.addfinalizer(lambda: keeper.poll() is None and keeper.kill())
    proc = subprocess.Popen(sweep_cmd(tmp_path, "--space", str(space), "--name", "tiny"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.time() + 240
    for line in proc.stdout:                          # wait until the second (last) trial starts
        seen.append(line)
        if sum(" started: " in s for s in seen) == 2 or time.time() > deadline:
            break
    assert sum(" started: " in s for s in seen) == 2, "".join(seen) + proc.stderr.read()[-3000:]
    # Ctrl-C with every trial created: Tune then marks the running ones TERMINATED in memory, so
    # only its saved state tells that the sweep did not finish.
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + out + err[-3000:]
    assert "--resume --name tiny" in out and "Test-suite accuracy" not in out
    client, runs, parents = trial_runs(tmp_path, "tiny")
    assert len(runs) == 2 and parents[0].info.status == "KILLED"

    moved = subprocess.run(sweep_cmd(tmp_path, "--resume", "--experiment", "other"), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert moved.returncode == 2 and "uses --experiment sweeps" in moved.stderr   # records stay together
    resumed = run_to_end(sweep_cmd(tmp_path, "--resume"), env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming sweep tiny" in resumed.stdout
    assert "| stripes" in resumed.stdout and "Test-suite accuracy" in resumed.stdout
    for stderr in (err, resumed.stderr):   # Ray never joined another instance on the machine
        assert "multiple active Ray instances" not in stderr

    client, runs, parents = trial_runs(tmp_path, "tiny")
    assert len(runs) == 2 and len({r.data.tags["backdrop.trial_id"] for r in runs}) == 2
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.params["dataset"] == "digits" and "lr_f" in run.data.params
        # one point per epoch and none twice: the interrupted trial continued from its checkpoint
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/worst")] == [1, 2, 3]
    best = [r for r in runs if "backdrop.best" in r.data.tags]
    assert len(best) == 1 and "test/clock" in best[0].data.metrics
    assert parents[0].data.tags["best_trials"] == best[0].data.tags["backdrop.trial_id"]
    # the winner's MLflow Model is the champion of the space's registered model
    assert "alias 'champion'" in resumed.stdout
    version = client.get_model_version_by_alias("backdrop-tiny", "champion")
    assert version.run_id == best[0].info.run_id and version.tags["sweep"] == "tiny"
    mlflow.set_tracking_uri(client.tracking_uri)
    from backdrop.api import load_model
    champion = load_model("models:/backdrop-tiny@champion")
    x = torch.rand(3, 1, 32, 32)
    assert torch.equal(champion(x), load_model(f"runs:/{best[0].info.run_id}/model")(x))
    # A sweep's runs are all there after the store's disk is wiped and the store comes back.
    time.sleep(3)                                     # the keeper's next check sees the last writes
    keeper.send_signal(signal.SIGTERM)
    assert keeper.wait(timeout=60) == 0, keeper.stdout.read()
    record = store_snapshot(client)
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(f"{tmp_path / 'mlflow.db'}{suffix}"):
            os.remove(f"{tmp_path / 'mlflow.db'}{suffix}")
    restored = subprocess.run([sys.executable, "-m", "platform.store", "restore", "--store", str(tmp_path / "mlflow.db"),
                               "--copy", str(copy)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0 and "restored" in restored.stdout, restored.stderr
    # a new connection to the restored file, as a restarted server opens (MLflow caches one per URI)
    assert store_snapshot(mlflow.MlflowClient(f"sqlite:///{tmp_path}/./mlflow.db")) == record
    # every trial run names its data (the UI's Dataset column) and its source
    for run in runs:
        contexts = {d.tags[0].value for d in run.inputs.dataset_inputs}
        assert contexts == {"train", "validation", "test"}, run.inputs
        assert run.data.tags["mlflow.source.name"] == "platform/sweep.py"


def store_snapshot(client):
    """Every run of the sweep experiment: id, status, tags, params, and every metric's history."""
    exp = client.get_experiment_by_name("sweeps")
    return sorted((r.info.run_id, r.info.status, sorted(r.data.tags.items()), sorted(r.data.params.items()),
                   sorted((k, [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)])
                          for k in r.data.metrics))
                  for r in client.search_runs([exp.experiment_id]))


def test_trial_record_fills_epochs_whose_report_was_lost(tmp_path):
    """Stopped between a trial's checkpoint and its result, a sweep loses that report; the
    restarted trial's next result carries the checkpoint, whose history fills the gap."""
    import pickle
    from types import SimpleNamespace

    from backdrop.checkpoints import save_checkpoint
    from backdrop.search_space import parse
    from backdrop.sweep_tracking import MLflowSweepCallback, SweepRecorder

    space = parse({"lr_f": {"loguniform": [1e-4, 1e-2]}, "fixed": {"limit": 8}}, "space.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    callback = MLflowSweepCallback(SweepRecorder(uri, "sweeps", "gap"), space.config, str(tmp_path))
    trial = SimpleNamespace(trial_id="t1", config={"lr_f": 1e-3}, last_result={})
    epoch = {1: {"val/worst": 0.1, "images_per_s": 10.0}, 2: {"val/worst": 0.2, "images_per_s": 11.0},
             3: {"val/worst": 0.3, "images_per_s": 12.0}}
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"step": 1, **epoch[1]})
    # epoch 2 was checkpointed but its result never arrived; the sweep restarts (Tune unpickles
    # its callbacks) and the trial's Train run continues from that checkpoint with epoch 3.
    checkpoint = tmp_path / "epoch_0003"
    checkpoint.mkdir()
    save_checkpoint(checkpoint, {}, [{"step": s, **m} for s, m in epoch.items()])
    restarted = pickle.loads(pickle.dumps(callback))
    restarted.on_trial_start(0, [], trial)
    restarted.on_trial_result(0, [], trial, {"step": 3, **epoch[3], "checkpoint_path": str(checkpoint)})

    client, runs, parents = trial_runs(tmp_path, "gap")
    assert len(runs) == 1 and len(parents) == 1                       # found again, not duplicated
    history = client.get_metric_history(runs[0].info.run_id, "val/worst")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert runs[0].data.params["lr_f"] == "0.001" and runs[0].data.params["limit"] == "8"


def test_one_worker_trials_train_in_reused_processes_and_pack_two_to_a_cpu(tmp_path):
    """A one-worker trial trains inside its own Tune process (no Ray Train run), Tune gives that
    process to the next trial (warm imports), and with `cpus_per_worker: 0.5` two trials share one
    CPU at once: on a one-CPU Ray instance, four trials run two at a time in two processes."""
    import ray
    from ray.tune import ExperimentAnalysis

    from backdrop import sweep
    from backdrop.search_space import parse

    space = parse({**yaml_space(TINY_SPACE), "sweep": {"trials": 4, "workers": 1, "cpus_per_worker": 0.5, "seed": 3}},
                  "pack.yaml")
    opts = sweep.new_options(space, {"name": "pack", "storage_path": str(tmp_path / "ray"), "no_register": True,
                                     "experiment": "sweeps", "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        assert sweep.concurrency(opts) == 2
        sweep.run_sweep(opts, device="cpu")
    finally:
        ray.shutdown()
    trials = ExperimentAnalysis(opts.path).trials
    assert len(trials) == 4
    # trained in the trial process itself: no Ray Train run was started for any trial
    assert not (tmp_path / "ray" / "pack" / "train").exists()
    assert len({t.last_result["pid"] for t in trials}) == 2, [t.last_result["pid"] for t in trials]
    client, runs, _ = trial_runs(tmp_path, "pack")
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert len(spans) == 4 and spans[0][1] > spans[1][0]        # the first two trials overlapped in time
    for run in runs:                                           # every epoch a trial trained, recorded once
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/worst")]
        assert steps == list(range(1, len(steps) + 1)) and steps


def test_a_trial_process_imports_neither_mlflow_nor_the_driver_side(tmp_path):
    """What Tune sends a trial (the trainable and the sweep's options, pickled by reference) and
    what training needs import no MLflow and not sweep.py: every trial process would pay about a
    second of CPU for MLflow as the sweep starts."""
    import pickle

    from backdrop import sweep
    from backdrop.search_space import parse

    opts = sweep.new_options(parse(yaml_space(TINY_SPACE), "tiny.yaml"),
                             {"name": "light", "storage_path": str(tmp_path / "ray"), "no_register": True,
                              "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    code = ("import pickle, sys; pickle.loads(sys.stdin.buffer.read()); import backdrop.train, backdrop.worker; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow' or m == 'backdrop.sweep'))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((sweep.trial_main, opts)), cwd=REPO,
                         capture_output=True, check=True)
    assert out.stdout.decode().strip() == "[]", out.stdout.decode()[:500]
    assert not (tmp_path / "mlflow.db").exists()       # nor did the options make the store: run_sweep does


def yaml_space(text):
    import yaml
    return yaml.safe_load(text)
