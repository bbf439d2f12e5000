"""The results collector: finished MLflow runs → one pyarrow table (a row per run) → Parquet,
Table-1-style tables (markdown, LaTeX) beside the poster's numbers, and figures; all of it is
also logged to MLflow as a `report` run.

A run is collected when it is FINISHED and has `test/*` metrics: runs of `platform.train`,
ablation children and sweep trials alike; parents and report runs have none and drop out.
Runs are grouped into table rows by label — the `spec` tag of ablation runs, else the method —
and into tables by (experiment, dataset); a row's cells are mean ± sd over its seeds.
"""
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from mlflow import MlflowClient

from . import experiments, figures, tracking
from .backgrounds import TEST_FAMILIES
from .errors import UserError
from .hparams import HPARAMS
from .results import (PAPER_TABLE1, TEST_COLUMNS, VAL_COLUMNS, latex_table, markdown_table, mean_sd_cell, per_seed_rows,
                      table1_rows)

REPORT_EXPERIMENT = experiments.REPORTS
NOISE_KEY = "noise/accuracy"
PAPER_ORDER = tuple(PAPER_TABLE1)            # vanilla, attention, adversarial first, as in Table 1
NOISE_TYPE = pa.list_(pa.struct([("rate", pa.float64()), ("accuracy", pa.float64())]))


def open_store(uri=None):
    """An MlflowClient on an existing store (a missing sqlite file is an error, not a new store)."""
    uri = tracking.tracking_uri(uri, create=False)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise UserError(f"no MLflow store at {uri[len('sqlite:///'):]}; pass --tracking-uri "
                        "(or run from the folder holding mlflow.db)")
    return MlflowClient(uri), uri


def _experiments(client, names):
    active = {e.name: e for e in client.search_experiments()}
    if not names:
        return list(active.values())
    missing = [n for n in names if n not in active]
    if missing:
        raise UserError(f"no MLflow experiment {', '.join(map(repr, missing))}; available: {', '.join(active) or 'none'}")
    return [active[n] for n in names]


def parse_tag_filters(items):
    """['key=value', ...] → {key: value}."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--tag: expected KEY=VALUE, got {item!r}")
        if "'" in value or "`" in key:
            raise UserError(f"--tag {item}: quotes are not supported in tag filters")
        out[key] = value
    return out


def find_runs(client, experiment_ids, tags=None):
    """Finished runs in these experiments with every tag equal to its filter value."""
    clauses = ["attributes.status = 'FINISHED'"] + [f"tags.`{k}` = '{v}'" for k, v in (tags or {}).items()]
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, " and ".join(clauses), max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        runs += page
        token = page.token
        if not token:
            return runs


def label_of(run):
    tags = run.data.tags
    return tags.get("spec") or tags.get("method") or run.data.params.get("method", "?")


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def collect(client, experiments=None, tags=None) -> pa.Table:
    """One row per finished run with test metrics; see the module docstring for the columns."""
    exps = {e.experiment_id: e.name for e in _experiments(client, experiments)}
    runs = [r for r in find_runs(client, list(exps), tags) if any(k.startswith("test/") for k in r.data.metrics)] \
        if exps else []
    test_keys = sorted({k for r in runs for k in r.data.metrics if k.startswith("test/")},
                       key=lambda k: (TEST_COLUMNS.index(k[5:]) if k[5:] in TEST_COLUMNS else len(TEST_COLUMNS), k))
    # The final epoch's validation metrics: what model selection may compare (never test/*).
    val_keys = [f"val/{c}" for c in VAL_COLUMNS if any(f"val/{c}" in r.data.metrics for r in runs)]
    rows = []
    for r in runs:
        history = sorted(client.get_metric_history(r.info.run_id, NOISE_KEY), key=lambda m: m.step)
        p, t = r.data.params, r.data.tags
        rows.append({
            "run_id": r.info.run_id, "run_name": r.info.run_name, "experiment": exps[r.info.experiment_id],
            "label": label_of(r), "method": t.get("method") or p.get("method"),
            "dataset": t.get("dataset") or p.get("dataset"), "seed": _int_or_none(p.get("seed")),
            "git_commit": t.get("git_commit"), "parent_run_id": t.get("mlflow.parentRunId"),
            "start_time": r.info.start_time,
            **{k: r.data.metrics.get(k) for k in test_keys + val_keys},
            "per_class": sorted((k[len(tracking.CLASS_PREFIX):], v) for k, v in r.data.metrics.items()
                                if k.startswith(tracking.CLASS_PREFIX)),
            "noise_curve": [{"rate": m.step / 100, "accuracy": m.value} for m in history],
            "tags": sorted(t.items()), "params": sorted(p.items()),
        })
    schema = pa.schema([
        ("run_id", pa.string()), ("run_name", pa.string()), ("experiment", pa.string()), ("label", pa.string()),
        ("method", pa.string()), ("dataset", pa.string()), ("seed", pa.int64()), ("git_commit", pa.string()),
        ("parent_run_id", pa.string()), ("start_time", pa.timestamp("ms")),
        *[(k, pa.float64()) for k in test_keys + val_keys],
        ("per_class", pa.map_(pa.string(), pa.float64())), ("noise_curve", NOISE_TYPE),
        ("tags", pa.map_(pa.string(), pa.string())), ("params", pa.map_(pa.string(), pa.string())),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def collect_stores(uris, experiments=None, tags=None) -> pa.Table:
    """`collect` over several MLflow stores (runs made in parallel, each writing its own sqlite
    file, or on other machines), as one table. Each experiment named in `experiments` must exist
    in at least one of the stores."""
    clients = [open_store(uri)[0] for uri in uris]
    names = [{e.name for e in c.search_experiments()} for c in clients]
    missing = [n for n in experiments or () if not any(n in have for have in names)]
    if missing:
        raise UserError(f"no MLflow experiment {', '.join(map(repr, missing))} in {len(uris)} store(s); "
                        f"available: {', '.join(sorted(set().union(*names))) or 'none'}")
    tables = [collect(c, [n for n in experiments if n in have] if experiments else None, tags)
              for c, have in zip(clients, names) if not experiments or have & set(experiments)]
    # The stores may hold different test metrics; missing columns become nulls.
    return pa.concat_tables(tables, promote_options="default")


# ------------------------------------------------------------------------------- summarising
RUN_PARAMS = ("seed", "n_train", "n_val", "n_test",   # vary between a row's runs by design
              "val_every")                            # when validation was scored: the training is the same


def _config(row):
    """A run's config for grouping. A knob added to the registry after a run was made is missing
    from that run's params; it ran with the knob's default (new knobs default to the old
    behaviour), so the default fills in and old and new runs of one config share a row."""
    params = {k: str(p.default) for k, p in HPARAMS.items()}
    params.update(row["params"])
    return tuple(sorted((k, v) for k, v in params.items() if k not in RUN_PARAMS))


def _table1_order(label):
    return (PAPER_ORDER.index(label) if label in PAPER_ORDER else len(PAPER_ORDER), label)


def sections(table: pa.Table):
    """{(experiment, dataset): {row label: [runs]}}: Table 1's methods first, then alphabetical.

    Runs are averaged only over seeds: where one label holds runs of different configs (another
    budget, a sweep's trials), each config gets its own row, named by the params that differ;
    where a seed of a config was run more than once (another commit, --rerun), the newest run
    stands for it, so n counts seeds and the sd is not shrunk by repeats."""
    out = {}
    for row in table.to_pylist():
        labels = out.setdefault((row["experiment"], row["dataset"]), {})
        labels.setdefault(row["label"], {}).setdefault(_config(row), []).append(row)
    result = {}
    for key, labels in sorted(out.items()):
        rows = result[key] = {}
        for label in sorted(labels, key=_table1_order):
            configs = [dict(c) for c in labels[label]]
            differ = sorted({k for c in configs for k in c if any(o.get(k) != c[k] for o in configs)})
            for config, runs in zip(configs, labels[label].values()):
                detail = ", ".join(f"{k}={config.get(k, '-')}" for k in differ)
                rows[f"{label} [{detail}]" if detail else label] = newest_per_seed(runs)
    return result


def newest_per_seed(runs):
    """One run per seed (the latest started); runs without a seed are all kept."""
    latest = {}
    for i, r in enumerate(runs):
        key = ("seed", r["seed"]) if r.get("seed") is not None else ("run", i)
        if key not in latest or (r.get("start_time") or 0) >= (latest[key].get("start_time") or 0):
            latest[key] = r
    return list(latest.values())


MAX_CLASS_COLUMNS = 20      # a wider per-class table is unreadable; the runs' class/* metrics keep every class


def class_order(name):
    """Digits in numeric order (MNIST's "0".."9", "10" after "9"), then names alphabetically (a
    folder's classes are its sub-folders in that order)."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def per_class_rows(groups):
    """(header, rows) of clean test accuracy per class, one row per label (mean ± sd over its
    seeds), or None when no run logged per-class metrics or there are too many classes."""
    names = sorted({k for rs in groups.values() for r in rs for k in dict(r.get("per_class") or ())}, key=class_order)
    if not names or len(names) > MAX_CLASS_COLUMNS:
        return None
    rows = []
    for label, runs in groups.items():
        accs = [dict(r.get("per_class") or ()) for r in runs]
        rows.append([label, str(len(runs)), *(mean_sd_cell([a[n] for a in accs if n in a]) for n in names)])
    return ["method", "n", *names], rows


def mean_curve(rows):
    """The noise curve averaged over runs, rate by rate."""
    acc = {}
    for row in rows:
        for point in row["noise_curve"] or ():
            acc.setdefault(point["rate"], []).append(point["accuracy"])
    return {rate: sum(v) / len(v) for rate, v in sorted(acc.items())}


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def write_report(table: pa.Table, out_dir, header_note=""):
    """Parquet, report.md, report.tex and two figures per table into `out_dir`; returns (md, tex)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "runs.parquet")
    md, tex = [f"# Test accuracy (%) by background\n\n{header_note}".rstrip() + "\n"], []
    for (experiment, dataset), groups in sections(table).items():
        header, rows = table1_rows(groups, with_paper=dataset == "mnist")
        title = f"experiment {experiment}, dataset {dataset}"
        over = "mean ± sd over seeds (n; the newest run per seed)"
        note = (f"{over}; poster rows: Table 1 of Cruz & Cardoso, MNIST" if dataset == "mnist"
                else f"{over}; the poster's numbers are for MNIST and are not shown here")
        md.append(f"## {title}\n\n{markdown_table(header, rows)}\n\n{note}\n")
        tex.append(latex_table(header, rows, caption=f"Test accuracy (%), {title}; {note}."))
        header, rows, summary = per_seed_rows(groups, with_paper=dataset == "mnist")
        md.append(f"### Per seed, {title}\n\n{markdown_table(header, rows)}\n\n"
                  + "".join(f"- {line}\n" for line in summary))
        if any(r.get("val/worst") is not None for rs in groups.values() for r in rs):
            header, rows = table1_rows(groups, split="val")
            md.append(f"### Validation accuracy (%), {title}\n\n{markdown_table(header, rows)}\n\n"
                      "the final epoch on the validation split, clean and over the validation background "
                      "families: the numbers model selection may compare (the test columns above may not)\n")
        per_class = per_class_rows(groups)
        if per_class:
            md.append(f"### Clean test accuracy per class (%), {title}\n\n{markdown_table(*per_class)}\n\n"
                      f"{over}: which classes the method finds hard, whatever the background\n")
        slug = _slug(f"{experiment}_{dataset}")
        bars = {lab: {c: sum(r[f"test/{c}"] for r in rs) / len(rs) for c in ("clean", *TEST_FAMILIES, "photos")
                      if all(r.get(f"test/{c}") is not None for r in rs)} for lab, rs in groups.items()}
        figures.bar_chart(bars, out / f"{slug}_backgrounds.png", title=f"Accuracy per background ({dataset})")
        curves = {lab: c for lab, c in ((lab, mean_curve(rs)) for lab, rs in groups.items()) if c}
        if curves:
            figures.noise_plot(curves, out / f"{slug}_noise.png", title=f"Accuracy vs salt-and-pepper rate ({dataset})")
    (out / "report.md").write_text("\n".join(md))
    (out / "report.tex").write_text("\n\n".join(tex) + "\n")
    return "\n".join(md), "\n\n".join(tex)


def ablation_deltas(client, experiment_names=None):
    """{"<ablation> (<dataset>)": [(column, Δ, low, high)]} from each ablation's newest finished
    parent run (the paired deltas `platform.ablate` logs on it), for the report's forest plot."""
    ids = [e.experiment_id for e in client.search_experiments() if not experiment_names or e.name in experiment_names]
    out = {}
    if not ids:
        return out
    for run in reversed(find_runs(client, ids)):                    # newest first
        tags, m = run.data.tags, run.data.metrics
        if "ablation_key" not in tags:
            continue
        label = f"{tags['ablation']} ({tags.get('dataset', '?')})"
        cols = [k.split("/", 1)[1] for k in m if k.startswith("delta/")]
        order = [c for c in TEST_COLUMNS if c in cols]
        out.setdefault(label, [(c, m[f"delta/{c}"], m.get(f"delta_low/{c}"), m.get(f"delta_high/{c}"))
                               for c in order])
    return out


def log_report(client, out_dir, n_runs, filters, experiment=REPORT_EXPERIMENT):
    """A `report` run holding every file of the report; returns its run id."""
    exp_id = tracking.experiment_id(client, experiment)
    tags = tracking.source_tags(report="true", **{f"filter.{k}": v for k, v in filters.items()})
    run = client.create_run(exp_id, run_name="report", tags=tags)
    client.log_param(run.info.run_id, "n_runs", n_runs)
    client.log_artifacts(run.info.run_id, str(out_dir))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
