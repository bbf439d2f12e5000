"""Would validation have seen it? Re-score finished runs' models on today's validation families
(the six shapes and the ten stroke families) and set the verdict beside each run's test columns.

    python benchmarks/validation_flags.py --tracking-uri sqlite:///seed3.db --data-dir ../shared/data

The flag rule: a run is **flagged** when its worst validation family (on the run's own validation
split) is below 95 %, the per-background floor the per-seed target asks of the test families, or
when the weakest fixed drawing of an "around" family (`<family>_fixed`: one drawing laid over
every image, as a test family lays its pattern) is below 90 % - 95 % less the ~2 points by which
the least of 32 noisy per-drawing estimates reads low, and a little more. The first clause was
fixed before any run was re-scored. The second was added on 2026-12-02 after the family means
had missed seed 1's circles failure, and its threshold was set having seen three re-scored runs
(seed 0 and seed 1 at 9334f48, the seed-3 rerun at 83521e5): those three calibrate it and are no
evidence for it; runs re-scored later are. A run **fails** on test when any test column is below
the poster's (MNIST) or below 95 %; a useful signal flags the runs that fail and not the others.
The test columns are read, never used to choose anything.
"""
import argparse
import platform as _platform_check  # noqa: F401  (run from the repo root: the shim must serve it)

import mlflow

from backdrop.api import load_model
from backdrop.backgrounds import FIXED_DRAWING_FAMILIES, SHAPE_FAMILIES, STROKE_FAMILIES, TEST_FAMILIES
from backdrop.data import load_dataset
from backdrop.errors import UserError, one_line_errors
from backdrop.evaluate import validation_scorer
from backdrop.report import _experiments, find_runs, open_store
from backdrop.results import PAPER_TABLE1, markdown_table

FLAG_BELOW = 0.95
FIXED_FLAG_BELOW = 0.90
FIXED = tuple(f"{f}_fixed" for f in FIXED_DRAWING_FAMILIES)
TEST_FLOOR = 0.95


def rescore(run, data_dir):
    """Validation accuracies of a run's model, or None when the run has no model (a failed run,
    a report): an MLflow Model `model`, or an older run's model/model.pt."""
    params = run.data.params
    try:
        model = load_model(f"runs:/{run.info.run_id}/model")
    except UserError:
        return None
    limit = int(params.get("limit") or 0) or None
    splits = load_dataset(params["dataset"], data_dir, seed=int(params["seed"]), limit=limit)
    return validation_scorer(splits)(model.algorithm.predict)


def failing_test_columns(metrics, dataset):
    poster = PAPER_TABLE1["adversarial"] if dataset == "mnist" else {}
    out = []
    for f in TEST_FAMILIES:
        v = metrics.get(f"test/{f}")
        if v is not None and (v < TEST_FLOOR or 100 * v < poster.get(f, 0)):
            out.append(f"{f} {100 * v:.1f}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", action="append", required=True, help="a store to read (repeatable)")
    p.add_argument("--experiment", action="append", help="experiment name(s); default: all")
    p.add_argument("--data-dir")
    a = p.parse_args()
    header = ["run", "seed", "val worst (shapes)", "val worst (strokes)", "weakest val family",
              "weakest fixed drawing", "flagged", "test worst", "test columns failing", "verdict"]
    rows = []
    for uri in a.tracking_uri:
        client, _ = open_store(uri)
        mlflow.set_tracking_uri(client.tracking_uri)
        for exp in _experiments(client, a.experiment):
            for run in find_runs(client, [exp.experiment_id]):
                val = rescore(run, a.data_dir)
                if val is None:
                    continue
                fams = {f: val[f] for f in SHAPE_FAMILIES + STROKE_FAMILIES}
                weakest = min(fams, key=fams.get)
                fixed = min(FIXED, key=val.get)
                flagged = fams[weakest] < FLAG_BELOW or val[fixed] < FIXED_FLAG_BELOW
                failing = failing_test_columns(run.data.metrics, run.data.params.get("dataset"))
                verdict = ("caught" if failing and flagged else "missed" if failing else
                           "false alarm" if flagged else "clean pass")
                rows.append([run.info.run_name, run.data.params.get("seed"),
                             f"{100 * min(val[f] for f in SHAPE_FAMILIES):.1f}",
                             f"{100 * min(val[f] for f in STROKE_FAMILIES):.1f}",
                             f"{weakest} {100 * fams[weakest]:.1f}", f"{fixed} {100 * val[fixed]:.1f}",
                             "yes" if flagged else "no",
                             f"{100 * run.data.metrics.get('test/worst', float('nan')):.1f}",
                             ", ".join(failing) or "none", verdict])
                print(markdown_table(header, rows[-1:]), flush=True)
    print()
    print(markdown_table(header, rows))


if __name__ == "__main__":
    with one_line_errors("validation_flags"):
        main()
