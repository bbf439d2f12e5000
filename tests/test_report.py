"""`python -m platform.report`: runs in a real MLflow store → Parquet, markdown and LaTeX whose
values equal the logged metrics, figures, and a `report` run; filters and one-line errors.

The store is filled the way the ablation driver fills it (a training record per run, logged by
backdrop.records.write_record), plus a parent run without test metrics that must be left out."""
import math
import re

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from backdrop.backgrounds import NOISE_RATES
from backdrop.records import write_record
from backdrop.report import REPORT_EXPERIMENT, sections
from backdrop.results import PAPER_TABLE1, TABLE1_COLUMNS, VAL_COLUMNS, per_seed_rows, table1_rows
from conftest import assert_one_line_error, run_cli, tiny_config, trained_record


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """exp-a: vanilla seeds 0, 1 (platform.train-like runs), adversarial seed 0 (an ablation child
    under a parent); exp-b: one more vanilla run. Returns (folder, tracking URI)."""
    d = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    client = MlflowClient(uri)
    # Every experiment made here, the report's included: artifacts stay in the temp folder.
    exp = {n: client.create_experiment(n, artifact_location=str(d / "artifacts" / n))
           for n in ("exp-a", "exp-b", REPORT_EXPERIMENT)}
    parent = client.create_run(exp["exp-a"], run_name="parent", tags={"ablation": "x"}).info.run_id
    client.set_terminated(parent, "FINISHED")
    for experiment, method, seed, tags in [("exp-a", "vanilla", 0, {}), ("exp-a", "vanilla", 1, {}),
                                           ("exp-a", "adversarial", 0, {"spec": "adversarial", "seed": "0"}),
                                           ("exp-b", "vanilla", 0, {})]:
        record = trained_record(tiny_config(method=method, seed=seed, limit=60))
        write_record(client, exp[experiment], record, run_name=f"{method} s{seed}", tags=tags,
                     parent_run_id=parent if tags else None)
    return d, uri


def report(store, *args):
    folder, uri = store
    return run_cli("platform.report", "--tracking-uri", uri, *args, timeout=300)


def cells_of(markdown, section):
    """{row label: [cells]} of the table under the '## ...section' heading (up to the next heading)."""
    block = markdown.split(f"## {section}")[1].split("\n#")[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("method",) and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


def test_report_values_equal_the_logged_metrics(store, tmp_path):
    out_dir = tmp_path / "out"
    proc = report(store, "--out", str(out_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store[1])

    # Parquet: one row per finished run with test metrics (the parent has none), values as logged.
    table = pq.read_table(out_dir / "runs.parquet")
    rows = {r["run_id"]: r for r in table.to_pylist()}
    assert len(rows) == 4
    for run_id, row in rows.items():
        run = client.get_run(run_id)
        tests = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
        assert {k: row[k] for k in tests} == tests and len(tests) == 10
        assert row["seed"] == int(run.data.params["seed"]) and row["method"] == run.data.params["method"]
        assert row["dataset"] == "digits" and dict(row["tags"]) == run.data.tags
        assert row["label"] == (run.data.tags.get("spec") or run.data.params["method"])
        history = sorted(client.get_metric_history(run_id, "noise/accuracy"), key=lambda m: m.step)
        assert [(p["rate"], p["accuracy"]) for p in row["noise_curve"]] == [(m.step / 100, m.value) for m in history]
        assert len(row["noise_curve"]) == len(NOISE_RATES)
        classes = {k[len("class/"):]: v for k, v in run.data.metrics.items() if k.startswith("class/")}
        assert dict(row["per_class"]) == classes and sorted(classes, key=int) == [str(k) for k in range(10)]

    # Markdown: mean ± sd over each label's runs, equal to the logged values at the printed precision.
    md = (out_dir / "report.md").read_text()
    assert md.strip() in proc.stdout
    for experiment, labels in {"exp-a": {"vanilla": 2, "adversarial": 1}, "exp-b": {"vanilla": 1}}.items():
        cells = cells_of(md, f"experiment {experiment}, dataset digits")
        assert set(cells) == set(labels)
        for label, n in labels.items():
            runs = [r for r in rows.values() if r["experiment"] == experiment and r["label"] == label]
            assert cells[label][0] == str(n) == str(len(runs))
            for col, cell in zip(TABLE1_COLUMNS, cells[label][1:]):
                v = [100 * client.get_run(r["run_id"]).data.metrics[f"test/{col}"] for r in runs]
                m = sum(v) / n
                printed = [float(x) for x in re.findall(r"\d+\.\d", cell)]
                assert abs(printed[0] - m) <= 0.05 + 1e-9, (label, col, cell, v)
                if n > 1:
                    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
                    assert abs(printed[1] - sd) <= 0.05 + 1e-9, (label, col, cell, v)
                else:
                    assert len(printed) == 1
    assert "(poster)" not in md                      # the poster's numbers are MNIST only

    # Under each table, the same layout over the final epoch's validation metrics (model selection's).
    cells = cells_of(md, "Validation accuracy (%), experiment exp-a, dataset digits")
    assert set(cells) == {"vanilla", "adversarial"}
    [adv] = [r for r in rows.values() if r["experiment"] == "exp-a" and r["label"] == "adversarial"]
    logged = client.get_run(adv["run_id"]).data.metrics
    for col, cell in zip(VAL_COLUMNS, cells["adversarial"][1:]):
        assert adv[f"val/{col}"] == logged[f"val/{col}"]
        assert abs(float(cell) - 100 * logged[f"val/{col}"]) <= 0.05 + 1e-9, (col, cell)

    # ... and clean accuracy per class, classes in label order, mean over each label's runs.
    section = "Clean test accuracy per class (%), experiment exp-a, dataset digits"
    assert re.search(r"\| method +\| n +\| 0 +\| 1 +\|", md.split(section)[1])
    cells = cells_of(md, section)
    vanilla = [r for r in rows.values() if r["experiment"] == "exp-a" and r["label"] == "vanilla"]
    for k, cell in enumerate(cells["vanilla"][1:]):
        m = sum(100 * dict(r["per_class"])[str(k)] for r in vanilla) / len(vanilla)
        assert abs(float(re.findall(r"\d+\.\d", cell)[0]) - m) <= 0.05 + 1e-9, (k, cell)

    tex = (out_dir / "report.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"$\pm$" in tex and tex in proc.stdout
    for name in ("exp-a_digits_backgrounds.png", "exp-a_digits_noise.png", "exp-b_digits_backgrounds.png"):
        assert (out_dir / name).stat().st_size > 1000

    # ... and the whole report is an MLflow run.
    [rep] = client.search_runs([client.get_experiment_by_name(REPORT_EXPERIMENT).experiment_id])
    assert rep.data.tags["report"] == "true" and rep.data.params["n_runs"] == "4"
    assert {"runs.parquet", "report.md", "report.tex", "exp-a_digits_noise.png"} <= \
        {a.path for a in client.list_artifacts(rep.info.run_id)}


def test_filters(store, tmp_path):
    proc = report(store, "--experiment", "exp-b", "--out", str(tmp_path / "b"), "--no-log")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert pq.read_table(tmp_path / "b" / "runs.parquet").column("experiment").to_pylist() == ["exp-b"]
    proc = report(store, "--tag", "spec=adversarial", "--tag", "seed=0", "--out", str(tmp_path / "t"), "--no-log")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert pq.read_table(tmp_path / "t" / "runs.parquet").column("label").to_pylist() == ["adversarial"]


def test_several_stores_make_one_table(store, tmp_path):
    """Runs logged in parallel to separate sqlite files: one report, seeds averaged across stores."""
    uri_b = f"sqlite:///{tmp_path / 'b.db'}"
    client_b = MlflowClient(uri_b)
    exp_b = client_b.create_experiment("exp-a", artifact_location=str(tmp_path / "artifacts"))
    write_record(client_b, exp_b, trained_record(tiny_config(method="vanilla", seed=2, limit=60)), run_name="vanilla s2")
    out_dir = tmp_path / "out"
    proc = report(store, "--tracking-uri", uri_b, "--experiment", "exp-a", "--out", str(out_dir), "--no-log")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pq.read_table(out_dir / "runs.parquet")
    assert sorted(zip(table.column("label").to_pylist(), table.column("seed").to_pylist())) == \
        [("adversarial", 0), ("vanilla", 0), ("vanilla", 1), ("vanilla", 2)]
    assert cells_of((out_dir / "report.md").read_text(), "experiment exp-a, dataset digits")["vanilla"][0] == "3"
    assert_one_line_error(report(store, "--tracking-uri", uri_b, "--experiment", "exp-b", "--experiment", "nope",
                                 "--no-log"), "'nope'", "exp-a, exp-b")


def test_bad_input_is_one_line(store, tmp_path):
    assert_one_line_error(report(store, "--experiment", "nope", "--no-log"), "'nope'", "exp-a")
    assert_one_line_error(report(store, "--tag", "spec=none", "--no-log"), "no finished runs")
    assert_one_line_error(report(store, "--tag", "spec", "--no-log"), "KEY=VALUE")
    missing = run_cli("platform.report", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", "--no-log")
    assert_one_line_error(missing, "none.db")
    assert not (tmp_path / "none.db").exists()


def test_poster_rows_sit_beside_mnist_results():
    runs = {"adversarial": [{f"test/{c}": 0.5 for c in TABLE1_COLUMNS}], "mask_off": [{f"test/{c}": 0.4 for c in TABLE1_COLUMNS}]}
    header, rows = table1_rows(runs, with_paper=True)
    assert [r[0] for r in rows] == ["adversarial", "adversarial (poster)", "mask_off"]
    poster = dict(zip(header, rows[1]))
    assert poster["clean"] == "94.9" and poster["clock"] == "70.8"
    assert poster["mean"] == "85.5" and poster["worst"] == "70.8"          # METHOD.md's summaries
    assert float(poster["stripes"]) == PAPER_TABLE1["adversarial"]["stripes"]


def test_runs_of_different_configs_are_not_averaged():
    """Seeds are averaged; another budget under the same label gets its own, named row."""
    import pyarrow as pa
    def row(seed, epochs, start=0):
        return {"experiment": "e", "dataset": "digits", "label": "adversarial", "seed": seed, "start_time": start,
                "params": [("seed", str(seed)), ("epochs_f", str(epochs)), ("lr_f", "0.001")]}
    table = pa.Table.from_pylist([row(0, 5), row(1, 5), row(0, 1)])
    groups = sections(table)[("e", "digits")]
    assert {k: len(v) for k, v in groups.items()} == {"adversarial [epochs_f=5]": 2, "adversarial [epochs_f=1]": 1}
    assert {k: len(v) for k, v in sections(table.slice(0, 2))[("e", "digits")].items()} == {"adversarial": 2}
    # a run made before a knob existed has no param for it: it ran with the default, same config
    newer = {**row(2, 5), "params": row(2, 5)["params"] + [("black_fraction", "0.0")]}
    older_and_newer = pa.Table.from_pylist([row(0, 5), row(1, 5), newer])
    assert {k: len(v) for k, v in sections(older_and_newer)[("e", "digits")].items()} == {"adversarial": 3}
    other = {**row(2, 5), "params": row(2, 5)["params"] + [("black_fraction", "0.25")]}
    split = sections(pa.Table.from_pylist([row(0, 5), other]))[("e", "digits")]
    assert set(split) == {"adversarial [black_fraction=0.0]", "adversarial [black_fraction=0.25]"}
    # the same seed run again (another commit): the newest run counts, n stays the number of seeds
    again = pa.Table.from_pylist([row(0, 5, start=1), row(1, 5, start=2), row(0, 5, start=3)])
    [runs] = sections(again)[("e", "digits")].values()
    assert sorted((r["seed"], r["start_time"]) for r in runs) == [(0, 3), (1, 2)]


def test_per_seed_rows_count_the_seeds_below_the_poster():
    """A mean over seeds can pass while one seed fails: the per-seed table names that seed."""
    good = {f"test/{c}": 0.99 for c in TABLE1_COLUMNS} | {"seed": 0, "val/worst": 0.98}
    bad = {**good, "seed": 3, "test/circles": 0.74, "val/worst": 0.973}
    header, rows, summary = per_seed_rows({"adversarial": [bad, good]}, with_paper=True)
    assert [r[1] for r in rows] == ["0", "3"]
    cells = {r[1]: dict(zip(header, r)) for r in rows}
    assert cells["3"]["below the poster"] == "circles" and cells["3"]["circles"] == "74.0"
    assert cells["0"]["below the poster"] == "none" and cells["3"]["val worst"] == "97.3"
    assert summary == ["adversarial: 1 of 2 seed(s) below the poster on some column"]
    assert per_seed_rows({"adversarial": [bad]}, with_paper=False)[2] == []     # not MNIST: no poster


def test_the_ablation_table_says_in_words_which_differences_are_real():
    from backdrop.ablate import Comparison, Row
    from backdrop.results import ablation_table
    from backdrop.stats import paired_delta

    def comparison(var_of, seeds=(0, 1, 2)):
        ref = {"clean": (0.95, 0.96, 0.94), "stripes": (0.80, 0.82, 0.81), "mean": (0.85, 0.86, 0.84)}
        rows = tuple(Row(k, v[:len(seeds)], var_of(k, v)[:len(seeds)], paired_delta(var_of(k, v)[:len(seeds)], v[:len(seeds)]))
                     for k, v in ref.items())
        return Comparison("mask_off", "adversarial", "digits", tuple(seeds), rows, {})

    hurt = ablation_table(comparison(lambda k, v: tuple(x - (0.10 + 0.001 * i if k == "stripes" else 0.001 * (-1) ** i)
                                                        for i, x in enumerate(v))))
    assert "Verdict: mask_off differs from adversarial on stripes (-10.1)" in hurt
    assert "on the rest the seeds show no difference" in hurt and "on the mean" in hurt
    same = ablation_table(comparison(lambda k, v: tuple(x + 0.001 * (-1) ** i for i, x in enumerate(v))))
    assert "the seeds show no difference between mask_off and adversarial on any row" in same
    one = ablation_table(comparison(lambda k, v: v, seeds=(0,)))
    assert "none possible from one seed" in one
