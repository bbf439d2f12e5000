"""A tiny ablation end to end through a real local Ray instance and a real MLflow sqlite store.

The printed comparison is checked against numbers recomputed here from the runs MLflow holds
(found by their tags, not through the comparison's own run ids), re-running must create no run,
and a metric changed in the store must show up in the next table: the table is read back from
MLflow, never taken from memory."""
import math
import re

import pytest
import ray
from mlflow import MlflowClient
from scipy.stats import t as student_t

from backdrop import ablate
from backdrop.ablate import ROWS
from backdrop.backgrounds import NOISE_RATES
from conftest import logged_model

# Applied to both sides like the budget flags; a few seconds per run (conftest.tiny_config's sizes).
TINY = {"limit": 48, "epochs_f": 1, "epochs_mask": 1, "epochs_adv": 1, "widths": [8, 16, 32], "batch_size": 16,
        "dense": 32, "gen_width": 8, "augment": False}
EXPERIMENT = "tiny-ablations"


@pytest.fixture(scope="module")
def ray_local():
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env=ablate.RUNTIME_ENV,
             logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh sqlite store; the working directory holds its artifacts (./mlruns)."""
    d = tmp_path_factory.mktemp("store")
    return d, f"sqlite:///{d / 'mlflow.db'}"


def run(store, capsys, monkeypatch, name="mask_off"):
    folder, uri = store
    monkeypatch.chdir(folder)
    comparison, table = ablate.run_ablation(name, seeds=(0, 1), overrides=TINY, tracking_uri=uri,
                                            experiment=EXPERIMENT)
    print(table)
    return comparison, capsys.readouterr().out


def parse_table(out):
    """{row: (reference cell, variant cell, delta, CI cell, mark)} from the printed markdown."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ROWS:
            rows[cells[0]] = tuple(cells[1:])
    return rows


def logged(client, uri_exp, spec):
    """{seed: test metrics} of the finished child runs of `spec`, found by tags."""
    runs = client.search_runs([uri_exp], f"tags.spec = '{spec}' and attributes.status = 'FINISHED'")
    return {int(r.data.tags["seed"]): r.data.metrics for r in runs}


def expected(ref, var, name):
    """The row recomputed independently, in %: (ref mean, ref sd, var mean, var sd, delta, low, high)."""
    def mean_sd(v):
        m = sum(v) / len(v)
        return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    seeds = sorted(ref)
    r = [100 * ref[s][f"test/{name}"] for s in seeds]
    a = [100 * var[s][f"test/{name}"] for s in seeds]
    md, sd = mean_sd([x - y for x, y in zip(a, r)])
    half = student_t.ppf(0.975, len(seeds) - 1) * sd / math.sqrt(len(seeds))
    return (*mean_sd(r), *mean_sd(a), md, md - half, md + half)


def check_row(cells, ref, var, name):
    """Printed cells equal the recomputed values (to the printed 0.1 precision), mark included."""
    printed = [float(x) for x in re.findall(r"[-+]?\d+\.\d", " ".join(cells[:4]))]
    want = expected(ref, var, name)
    assert len(printed) == 7, cells
    assert all(abs(p - w) <= 0.05 + 1e-6 for p, w in zip(printed, want)), (name, cells, want)
    assert cells[4] == ("*" if want[5] > 0 or want[6] < 0 else ""), (name, cells, want)


def all_runs(client, exp_id):
    return {r.info.run_id: r.info.status for r in client.search_runs([exp_id], max_results=1000)}


def test_tiny_ablation_through_ray_and_mlflow(ray_local, store, capsys, monkeypatch):
    comparison, out = run(store, capsys, monkeypatch)
    assert "0 finished run(s) reused, 4 to train" in out
    client = MlflowClient(store[1])
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id

    # one parent (tagged with the ablation, its reference and the commit) and a child per (spec, seed)
    runs = client.search_runs([exp_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    p = parents[0]
    assert (p.data.tags["ablation"], p.data.tags["reference"]) == ("mask_off", "adversarial")
    assert len(p.data.tags["git_commit"]) >= 7 and p.info.status == "FINISHED"
    assert {(c.data.tags["spec"], c.data.tags["seed"]) for c in children} == \
        {("mask_off", "0"), ("mask_off", "1"), ("adversarial", "0"), ("adversarial", "1")}
    for c in children:
        assert c.data.tags["mlflow.parentRunId"] == p.info.run_id and c.info.status == "FINISHED"
        assert c.data.tags["git_commit"] == p.data.tags["git_commit"]
        assert c.data.params["mask"] == ("none" if c.data.tags["spec"] == "mask_off" else "unet")
        assert c.data.params["seed"] == c.data.tags["seed"] and c.data.params["epochs_f"] == "1"
        # what platform.train logs: per-epoch curves, test metrics, the noise curve, figures, the model
        assert {"val/clean", "test/clean", "test/mean", "test/worst", "noise/accuracy"} <= set(c.data.metrics)
        assert len(client.get_metric_history(c.info.run_id, "noise/accuracy")) == len(NOISE_RATES)
        files = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"test_backgrounds.png", "noise_curve.png"} <= files and logged_model(client, c.info.run_id)

    # the printed numbers are those recomputed from the logged runs
    table = parse_table(out)
    ref, var = logged(client, exp_id, "adversarial"), logged(client, exp_id, "mask_off")
    assert set(table) == set(ROWS)
    for name in ROWS:
        check_row(table[name], ref, var, name)
    assert comparison.parent_run_id == p.info.run_id
    assert {"forest.png", "comparison.md", "ablation.json"} <= {a.path for a in client.list_artifacts(p.info.run_id)}


def test_rerun_skips_finished_runs_and_reads_the_store(ray_local, store, capsys, monkeypatch, tmp_path):
    client = MlflowClient(store[1])
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    before = all_runs(client, exp_id)
    assert len(before) == 5

    # Change a logged value behind the driver's back: the next table must show it.
    victim = client.search_runs([exp_id], "tags.spec = 'mask_off' and tags.seed = '1'")[0]
    client.log_metric(victim.info.run_id, "test/clean", 0.123)

    comparison, out = run(store, capsys, monkeypatch)
    assert "4 finished run(s) reused, 0 to train" in out and "Ray tasks" not in out
    after = all_runs(client, exp_id)
    assert set(after) == set(before) and all(s == "FINISHED" for s in after.values())
    table = parse_table(out)
    var = logged(client, exp_id, "mask_off")
    assert var[1]["test/clean"] == 0.123
    check_row(table["clean"], logged(client, exp_id, "adversarial"), var, "clean")

    # A second ablation shares the reference's runs: only its own two runs are trained.
    _, out = run(store, capsys, monkeypatch, name="heuristic_mask")
    assert "2 finished run(s) reused, 2 to train" in out
    assert len(all_runs(client, exp_id)) == 5 + 1 + 2
    # Each ablation tags the runs it uses with their role, shared reference runs included.
    both = client.search_runs([exp_id], "tags.`role.heuristic_mask` != ''")
    assert sorted((r.data.tags["spec"], r.data.tags["role.heuristic_mask"]) for r in both) == \
        [("adversarial", "reference")] * 2 + [("heuristic_mask", "variant")] * 2
    assert all(r.data.tags["role.mask_off"] == "reference" for r in both if r.data.tags["spec"] == "adversarial")
    assert set(parse_table(out)) == set(ROWS)

    # The report's forest plot reads each ablation's paired deltas from its parent run.
    from backdrop.figures import forest_plot
    from backdrop.report import ablation_deltas
    deltas = ablation_deltas(client, [EXPERIMENT])
    assert set(deltas) == {"mask_off (digits)", "heuristic_mask (digits)"}
    parent = client.search_runs([exp_id], "tags.ablation = 'heuristic_mask' and tags.ablation_key != ''")[0]
    assert deltas["heuristic_mask (digits)"] == [
        (c, parent.data.metrics[f"delta/{c}"], parent.data.metrics[f"delta_low/{c}"],
         parent.data.metrics[f"delta_high/{c}"]) for c in ROWS]
    assert forest_plot(deltas, tmp_path / "forest.png").stat().st_size > 0


def test_a_negative_gpu_share_is_refused_in_one_line_before_anything_runs(tmp_path):
    from conftest import run_cli
    proc = run_cli("platform.ablate", "mask_off", "--gpus-per-run", "-1", "--tracking-uri",
                   f"sqlite:///{tmp_path / 'a.db'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--gpus-per-run" in lines[0]
    assert not (tmp_path / "a.db").exists()


def test_an_ablation_joins_the_cluster_ray_address_names_and_says_so_when_nobody_is_there(tmp_path):
    """`ray job submit` sets $RAY_ADDRESS: an ablation's Ray tasks go there, as Ray Train runs do,
    and an address nobody listens on is one line naming the variable, not minutes of retries."""
    import socket
    import time

    from conftest import run_cli
    with socket.socket() as s:                  # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = run_cli("platform.ablate", "mask_off", "--seeds", "1", "--tracking-uri", f"sqlite:///{tmp_path / 'a.db'}",
                   env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]          # (MLflow's INFO lines as it makes the store come first)
    assert last.startswith("platform.ablate: error: cannot reach a Ray cluster"), last
    assert all(s in last for s in ("$RAY_ADDRESS", f"127.0.0.1:{port}", "unset RAY_ADDRESS")), last
    assert time.perf_counter() - t0 < 60


def test_a_set_of_ablations_against_the_adopted_config_shares_its_reference_runs(ray_local, store, capsys,
                                                                                 monkeypatch):
    """`platform.ablate A B --reference adopted`: one Ray batch trains the adopted config's runs once
    for both ablations, each gets its parent and table, and a summary puts their Δs side by side."""
    from backdrop.commands.ablate import main
    from backdrop.hparams import load_config
    folder, uri = store
    monkeypatch.chdir(folder)
    budget = ["--seeds", "0,1", "--limit", "48", "--epochs-f", "1", "--epochs-mask", "1", "--epochs-adv", "1",
              "--widths", "8,16,32", "--batch-size", "16"]
    main(["no_averaged_f", *budget, "mask_off", "--reference", "adopted", "--tracking-uri", uri,
          "--experiment", "set"])
    out = capsys.readouterr().out
    assert "0 finished run(s) reused, 6 to train" in out           # 2 reference + 2 + 2, not 8
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("set").experiment_id
    parents = {r.data.tags["ablation"]: r for r in client.search_runs([exp_id], "tags.ablation_key != ''")}
    assert set(parents) == {"no_averaged_f", "mask_off"}
    assert all(p.data.tags["reference"] == "adopted" and p.info.status == "FINISHED" for p in parents.values())
    reference = client.search_runs([exp_id], "tags.spec = 'adopted'")
    assert len(reference) == 2
    adopted = load_config("configs/table1/mnist_adversarial.yaml")
    for r in reference:       # the adopted config's game, under the command line's budget
        assert {k: r.data.params[k] for k in ("tiles", "f_average", "diversity", "symmetric_backgrounds")} == \
            {k: str(adopted[k]) for k in ("tiles", "f_average", "diversity", "symmetric_backgrounds")}
        assert r.data.params["epochs_adv"] == "1"
        assert {r.data.tags["role.no_averaged_f"], r.data.tags["role.mask_off"]} == {"reference"}
    mask_off = client.search_runs([exp_id], "tags.spec = 'mask_off'")
    assert len(mask_off) == 2 and all(r.data.params["f_average"] == str(adopted["f_average"]) for r in mask_off)
    # the summary: one row per ablation, its cells the parents' logged deltas
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| no_averaged_f") or line.startswith("| mask_off")}
    header = next(line for line in out.splitlines() if line.startswith("| ablation"))
    columns = [c.strip() for c in header.split("|")[2:-1]]
    assert columns == list(ROWS)
    for name, cells in rows.items():
        metrics = parents[name].data.metrics
        for column, cell in zip(columns, cells):
            assert cell.startswith(f"{100 * metrics[f'delta/{column}']:+.1f} [{100 * metrics[f'delta_low/{column}']:+.1f}, "), cell
            assert cell.endswith("*") == (metrics[f"delta_low/{column}"] > 0 or metrics[f"delta_high/{column}"] < 0)
