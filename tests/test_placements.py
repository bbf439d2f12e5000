"""Every placement of a job reads the paths a user typed as the user meant them. Ray runs
workers, tasks and its Train controller in working directories of their own, so a relative
`--data-dir ../shared/data`, `$BACKDROP_DATA_DIR`, a relative sqlite store or `--save` path must
be made absolute by the driver. Each command runs from the repo root, as the README shows it,
with the data folder given relative to it."""
import os

import pytest
from mlflow import MlflowClient

from conftest import REPO, SHARED_DATA, run_cli, two_trial_sweep

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"MNIST files not at {SHARED_DATA}")

TINY = ["--limit", "64", "--method", "vanilla", "--epochs-f", "1", "--widths", "8,16,32", "--dense", "32",
        "--batch-size", "16", "--augment", "false"]


def rel(path):
    return os.path.relpath(path, REPO)


def test_train_with_workers_reads_relative_paths(tmp_path):
    """The flag's relative path; $BACKDROP_DATA_DIR's is the sweep test's below (both go through
    data.data_dir_for_workers)."""
    data = rel(SHARED_DATA)                        # ../shared/data in a checkout beside shared/
    assert not os.path.isabs(data)
    store, model = rel(tmp_path / "store.db"), rel(tmp_path / "model.pt")
    proc = run_cli("platform.train", "--workers", "2", "--dataset", "mnist", "--data-dir", data, *TINY,
                   "--tracking-uri", f"sqlite:///{store}", "--save", model, "--storage-path", rel(tmp_path / "ray"),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "model.pt").is_file()                   # --save is honoured with workers
    client = MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("backdrop").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/worst")] == [1]
    assert run.data.params["n_train"] == "64"
    assert "waiting for the first epoch" not in proc.stdout     # --quiet: no waiting lines either


def test_ablation_tasks_read_a_relative_data_dir(tmp_path):
    proc = run_cli("platform.ablate", "mask_off", "--dataset", "mnist", "--data-dir", rel(SHARED_DATA),
                   "--seeds", "1", "--limit", "48", "--widths", "8,16,32", "--batch-size", "16", "--epochs-f", "1", "--epochs-mask", "1", "--epochs-adv", "1",
                   "--tracking-uri", f"sqlite:///{rel(tmp_path / 'a.db')}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'a.db'}")
    runs = client.search_runs([client.get_experiment_by_name("backdrop-ablations").experiment_id],
                              "tags.spec != ''")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


def test_table1_benchmark_reads_a_relative_data_dir_and_finishes_a_set_rather_than_redoing_it(tmp_path):
    """Seeds as Ray tasks (--parallel) reading the relative data folder; the same command again at
    the same commit reuses the finished run instead of training it again."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKDROP_DATA_DIR")}

    def table1():
        return subprocess.run([sys.executable, "benchmarks/table1.py", "--dataset", "mnist", "--data-dir",
                               rel(SHARED_DATA), "--methods", "vanilla", "--limit", "64", "--parallel",
                               "--tracking-uri", f"sqlite:///{rel(tmp_path / 't.db')}", "--out", str(tmp_path / "report")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    first = table1()
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "report" / "report.md").is_file() and "0 finished run(s)" in first.stdout
    again = table1()
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 finished run(s) of the same config and commit reused, 0 to train" in again.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 't.db'}")
    [exp] = [e for e in client.search_experiments() if e.name.startswith("table1")]
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_sweep_over_seeds_reads_a_relative_data_dir_and_scores_each_config_by_its_worst_seed(tmp_path):
    """A sweep with `seeds: 2` trains its config once per seed (seeds 5 and 6: the file's seed,
    then +1), in trials whose workers read a relative data dir; its objective is the worse seed's
    val/worst, both seeds are scored on the test suite, and the better one on validation is the
    registered champion."""
    space = tmp_path / "mnist.yaml"
    space.write_text("sweep: {trials: 1, workers: 1, seeds: 2}\n"
                     "fixed: {dataset: mnist, method: vanilla, limit: 64, widths: [8, 16, 32], dense: 32,\n"
                     "        batch_size: 16, augment: false, epochs_f: 1, seed: 5}\n"
                     "lr_f: {loguniform: [1.0e-3, 2.0e-3]}\n")
    env = {"BACKDROP_DATA_DIR": rel(SHARED_DATA)}              # the environment's relative path
    proc = run_cli("platform.sweep", "--space", str(space), "--name", "rel", "--storage-path", rel(tmp_path / "ray"),
                   "--tracking-uri", f"sqlite:///{rel(tmp_path / 's.db')}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 trials x 2 seeds" in proc.stdout and "worst of 2 seeds" in proc.stdout
    assert "By config" in proc.stdout and "chosen config's 2 seeds" in proc.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 's.db'}")
    runs = client.search_runs([client.get_experiment_by_name("backdrop-sweeps").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)     # the sweep and its 2 trials
    trials = sorted((r for r in runs if r.data.tags["backdrop.role"] == "trial"), key=lambda r: r.data.params["seed"])
    [parent] = [r for r in runs if r.data.tags["backdrop.role"] == "sweep"]
    assert [t.data.params["seed"] for t in trials] == ["5", "6"]
    assert trials[0].data.params["lr_f"] == trials[1].data.params["lr_f"]       # one config, two seeds
    assert all("test/clean" in t.data.metrics for t in trials)                 # both seeds scored on test
    val = [t.data.metrics["val/worst"] for t in trials]
    assert parent.data.metrics["best/val_worst_over_seeds"] == min(val)
    champion = client.get_model_version_by_alias("backdrop-mnist", "champion")
    assert champion.run_id == trials[val.index(max(val))].info.run_id


def test_worst_seed_tells_optuna_the_worst_repeat():
    """The searcher of a sweep over seeds: Optuna (a real study) learns each config's worst seed,
    and a config with a seed that never scored (a crashed trial) fails."""
    from ray.tune.search.optuna import OptunaSearch

    from backdrop.search_space import SEED_INDEX
    from backdrop.sweep import WorstSeed

    def space(trial):
        trial.suggest_float("lr_f", 1e-3, 1e-2)
    search = WorstSeed(OptunaSearch(space=space, metric="val/worst", mode="max"), repeat=3)
    configs = {f"t{i}": search.suggest(f"t{i}") for i in range(6)}
    assert [c[SEED_INDEX] for c in configs.values()] == [0, 1, 2, 0, 1, 2]
    assert configs["t0"]["lr_f"] == configs["t2"]["lr_f"] != configs["t3"]["lr_f"]
    for trial_id, score in zip(configs, (0.9, 0.4, 0.8, 0.7, 0.6, float("nan"))):
        search.on_trial_complete(trial_id, {"val/worst": score})
    study = search.searcher._ot_study
    assert study.trials[0].value == 0.4                            # the worst seed
    assert study.trials[1].state.name == "FAIL" and study.trials[1].value is None


def test_a_sweeps_trials_never_read_the_data_files(tmp_path):
    """The driver reads the data set once and every trial carves its splits from that copy in
    Ray's object store: a data file damaged after the driver read it (same size and mtime, so the
    driver's cached read stands) is never read by a trial, and the sweep trains and finishes.
    A trial that read the file itself would fail on it (test_distributed's bad-input test)."""
    from test_distributed import corrupt_after_check
    corrupt_after_check(SHARED_DATA / "mnist", tmp_path / "mnist")
    space = tmp_path / "copy.yaml"
    space.write_text("sweep: {trials: 2, workers: 1}\n"
                     "fixed: {dataset: mnist, method: vanilla, limit: 64, widths: [8, 16, 32], dense: 32,\n"
                     "        batch_size: 16, augment: false, epochs_f: 1}\n"
                     "lr_f: {loguniform: [1.0e-3, 2.0e-3]}\n")
    two_trial_sweep(space, tmp_path, data_dir=str(tmp_path / "mnist"))
