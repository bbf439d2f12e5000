"""Table 1 of the poster on full MNIST (or Fashion-MNIST): vanilla, attention and the adversarial
method, each from its named config in configs/table1/, over one or more seeds; every run is logged
to MLflow (experiment `table1-<dataset>`) and the table is built from the logged runs by the
report collector, beside the poster's numbers.

    python benchmarks/table1.py --dataset mnist --data-dir ../shared/data --seeds 0 1 2
    python -m platform.report --experiment table1-mnist        # the same table again, any time

With --parallel the runs are Ray tasks of one CPU each, as many at a time as the Ray instance has
CPUs (a new local one, or --address of a cluster); this process, the store's only writer, logs
each run as its task returns. The configs, seeds and recorded metrics are those of the in-process
runs; a task has one CPU thread, so its floats may differ in the last digits from a run that used
several (run names: "<method> s<seed>" instead of "<method>-seed<seed>").

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
from backdrop.job import run_job

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
    p.add_argument("--parallel", action="store_true",
                   help="train the runs as Ray tasks, one CPU each, as many at once as Ray has CPUs; a run "
                        "with a FINISHED record of the same config at the same commit is reused, so the same "
                        "command finishes a set that a stopped session began")
    p.add_argument("--rerun", action="store_true", help="with --parallel: train every run, reusing none")
    p.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="with --parallel: a GPU share per run (0.25: four runs at once on each GPU); default 0, the CPU")
    p.add_argument("--address", help="with --parallel: a Ray cluster (HOST:PORT or auto); default: $RAY_ADDRESS "
                                         "if set, else a new local instance")
    a = p.parse_args()
    if a.config and len(a.methods) != 1:
        raise UserError(f"--config replaces one method's config; give one method, not {' '.join(a.methods)}")
    experiment = f"table1-{a.dataset}"
    if a.gpus_per_run and not a.parallel:
        raise UserError("--gpus-per-run shares GPUs among Ray tasks; add --parallel")
    if a.gpus_per_run < 0 or (a.gpus_per_run > 1 and a.gpus_per_run != int(a.gpus_per_run)):
        raise UserError(f"--gpus-per-run must be a share of one GPU (0 to 1) or a whole number, got {a.gpus_per_run:g}")
    if a.address and not a.parallel:
        raise UserError("--address needs --parallel (the sequential runs train in this process)")
    configs = {}
    for seed in a.seeds:
        for method in a.methods:
            cfg = load_config(a.config or CONFIGS / f"{a.dataset}_{method}.yaml")
            configs[(method, seed)] = make_config({**cfg, "seed": seed, **({"limit": a.limit} if a.limit else {})})
    started = time.perf_counter()
    walls = run_parallel(configs, a, experiment) if a.parallel else run_in_process(configs, a, experiment)
    client, _ = open_store(tracking.tracking_uri(a.tracking_uri))
    table = collect(client, [experiment], {"benchmark": "table1"})
    write_report(table, a.out)
    print((Path(a.out) / "report.md").read_text())
    print(f"hardware: {_platform_check.processor() or _platform_check.machine()}, "
          f"{torch.get_num_threads()} torch threads in this process, cuda={torch.cuda.is_available()}")
    for seed in a.seeds:
        total = sum(w for (m, s), w in walls.items() if s == seed)
        print(f"seed {seed}: all methods {total / 60:.1f} min (run time, summed)")
    print(f"wall time, all runs: {(time.perf_counter() - started) / 60:.1f} min")


def run_in_process(configs, a, experiment):
    walls = {}
    for (method, seed), cfg in configs.items():
        t0 = time.perf_counter()
        result = run_job(cfg, data_dir=a.data_dir, tracking_uri=a.tracking_uri, experiment=experiment,
                         run_name=f"{method}-seed{seed}", progress=False,
                         tags={"benchmark": "table1"}, with_noise=a.noise_curve)
        walls[(method, seed)] = time.perf_counter() - t0
        print(f"{method} seed {seed}: {walls[(method, seed)] / 60:.1f} min, "
              f"test clean {100 * result['test']['clean']:.1f}, mean {100 * result['test']['mean']:.1f}, "
              f"worst {100 * result['test']['worst']:.1f}", flush=True)
    return walls


def run_parallel(configs, a, experiment):
    """Every (method, seed) as a Ray task (ablate.run_configs: the driver logs each record)."""
    from mlflow import MlflowClient

    from backdrop.ablate import run_configs

    run_of = run_configs(configs, experiment=experiment, tags={"benchmark": "table1"}, tracking_uri=a.tracking_uri,
                         data_dir=a.data_dir, address=a.address, rerun=a.rerun, with_noise=a.noise_curve,
                         gpus_per_run=a.gpus_per_run, say=lambda line: print(line, flush=True))
    client = MlflowClient(tracking.tracking_uri(a.tracking_uri))
    walls = {}
    for key, run_id in run_of.items():
        run = client.get_run(run_id)
        walls[key] = (run.info.end_time - run.info.start_time) / 1000
    return walls


if __name__ == "__main__":
    with one_line_errors("table1"):
        main()
