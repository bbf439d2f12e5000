"""Table 1 of the poster on full MNIST (or Fashion-MNIST): vanilla, attention and the adversarial
method, each from its named config in configs/table1/, over one or more seeds; every run is logged
to MLflow (experiment `table1-<dataset>`) and the table is built from the logged runs by the
report collector, beside the poster's numbers.

    python benchmarks/table1.py --dataset mnist --data-dir ../shared/data --seeds 0 1 2
    python -m platform.report --experiment table1-mnist        # the same table again, any time

Hyperparameters are chosen on validation data and validation backgrounds only (the configs say
so); the six test backgrounds are scored once, at the end of each run.
"""
import argparse
import platform as _platform_check  # noqa: F401  (run from the repo root: the shim must serve it)
import time
from pathlib import Path

import torch

from backdrop import tracking
from backdrop.errors import UserError, one_line_errors
from backdrop.hparams import load_config, make_config
from backdrop.report import collect, open_store, write_report
from backdrop.run import run_single

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "table1"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir")
    p.add_argument("--methods", nargs="+", default=["vanilla", "attention", "adversarial"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--tracking-uri")
    p.add_argument("--limit", type=int, help="keep the first N images of each split (a quick check, not Table 1)")
    p.add_argument("--out", default="reports/table1")
    p.add_argument("--noise-curve", action="store_true",
                   help="also score the 21-rate salt-and-pepper curve (not part of Table 1; ~3x the test suite's time)")
    p.add_argument("--config", help="a config file in place of configs/table1/<dataset>_<method>.yaml "
                   "(one method only): a candidate is compared on validation before it replaces the named file")
    a = p.parse_args()
    if a.config and len(a.methods) != 1:
        raise UserError(f"--config replaces one method's config; give one method, not {' '.join(a.methods)}")
    experiment = f"table1-{a.dataset}"
    walls = {}
    for seed in a.seeds:
        for method in a.methods:
            cfg = load_config(a.config or CONFIGS / f"{a.dataset}_{method}.yaml")
            cfg = make_config({**cfg, "seed": seed, **({"limit": a.limit} if a.limit else {})})
            t0 = time.perf_counter()
            result = run_single(cfg, data_dir=a.data_dir, tracking_uri=a.tracking_uri, experiment=experiment,
                                run_name=f"{method}-seed{seed}", progress=False,
                                tags={"benchmark": "table1"}, with_noise=a.noise_curve)
            walls[(method, seed)] = time.perf_counter() - t0
            print(f"{method} seed {seed}: {walls[(method, seed)] / 60:.1f} min, "
                  f"test clean {100 * result['test']['clean']:.1f}, mean {100 * result['test']['mean']:.1f}, "
                  f"worst {100 * result['test']['worst']:.1f}", flush=True)
    client, _ = open_store(tracking.tracking_uri(a.tracking_uri))
    table = collect(client, [experiment], {"benchmark": "table1"})
    write_report(table, a.out)
    print((Path(a.out) / "report.md").read_text())
    print(f"hardware: {_platform_check.processor() or _platform_check.machine()}, "
          f"{torch.get_num_threads()} torch threads, cuda={torch.cuda.is_available()}")
    for seed in a.seeds:
        total = sum(w for (m, s), w in walls.items() if s == seed)
        print(f"seed {seed}: all methods {total / 60:.1f} min")


if __name__ == "__main__":
    with one_line_errors("table1"):
        main()
