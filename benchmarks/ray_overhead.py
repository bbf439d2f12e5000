"""Ray's overhead on one short training run: the same config (about a minute on 2 CPU cores)
through the plain loop, through Ray Train with one worker, and through Ray Tune (one trial that
fits that Ray Train run, as `platform.sweep` does). Writes the figures to docs/BENCHMARKS.md,
section "Ray overhead".

    python benchmarks/ray_overhead.py [--repeats 2] [--no-write]

Fair comparison: the Ray Train worker gets all the cores the plain loop uses (Ray sets its torch
threads from its CPU count), and the plain loop writes the same per-epoch checkpoint. Ray's start
(`ray.init` of a local instance) is a once-per-session cost, reported apart from the ratios.
Runs alternate plain / Train / Tune and each mode keeps its fastest repeat, which filters out
other load on the machine.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import torch  # noqa: E402

from backdrop.data import load_dataset  # noqa: E402
from backdrop.checkpoints import save_checkpoint  # noqa: E402
from backdrop.distributed import connect, make_trainer  # noqa: E402
from backdrop.hparams import make_config  # noqa: E402
from backdrop.train import build_algorithm, train  # noqa: E402
from doc_sections import write_section  # noqa: E402  (benchmarks/, on sys.path as the script's folder)

# The paper's network widths on the offline digits: about a minute in the plain loop on 2 cores.
CONFIG = dict(dataset="digits", batch_size=64, epochs_f=8, epochs_mask=3, epochs_adv=8)
CPUS = os.cpu_count() or 1


def plain_setup(cfg):
    """What every run does before its first epoch: load the data, build the networks."""
    t0 = time.perf_counter()
    build_algorithm(cfg, load_dataset(cfg["dataset"], seed=cfg["seed"]))
    return time.perf_counter() - t0


def plain(cfg, storage):
    """The loop in this process, saving the same checkpoint every epoch."""
    t0 = time.perf_counter()
    splits = load_dataset(cfg["dataset"], seed=cfg["seed"])
    history = []

    def on_epoch(end):
        history.append({"step": end.step})
        with tempfile.TemporaryDirectory(dir=storage) as d:
            save_checkpoint(d, end.checkpoint(), history)
    train(cfg, splits, on_epoch=on_epoch)
    return time.perf_counter() - t0


def ray_train(cfg, storage, name):
    t0 = time.perf_counter()
    make_trainer(cfg, workers=1, cpus_per_worker=CPUS, name=name, storage_path=storage, max_failures=0).fit()
    return time.perf_counter() - t0


def ray_train_empty(cfg, storage, name):
    """Start-up and tear-down only: the same run with no epochs (loads the data, builds the nets)."""
    return ray_train({**cfg, "epochs_f": 0, "epochs_mask": 0, "epochs_adv": 0}, storage, name)


def tune_trial(config):
    """The Tune trainable: one Ray Train run, reporting to Tune (as backdrop.trial.trial_main)."""
    from ray.tune.integration.ray_train import TuneReportCallback
    make_trainer(config["cfg"], workers=1, cpus_per_worker=CPUS, name=f"train-{ray.tune.get_context().get_trial_id()}",
                 storage_path=config["storage"], callbacks=[TuneReportCallback()], max_failures=0).fit()


def ray_tune(cfg, storage, name):
    from ray import tune
    t0 = time.perf_counter()
    tune.Tuner(tune_trial, param_space={"cfg": cfg, "storage": storage},
               run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0)).fit()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = p.parse_args()
    cfg = make_config(CONFIG)
    storage = tempfile.mkdtemp(prefix="ray_overhead_")
    t0 = time.perf_counter()
    connect(min_cpus=CPUS + 1)        # a Tune trial: one CPU for its driver plus the worker's
    start = time.perf_counter() - t0
    times = {"plain loop": [], "Ray Train, 1 worker": [], "Ray Tune, 1 trial": []}
    empty = []
    for r in range(args.repeats):
        times["plain loop"].append(plain(cfg, storage))
        times["Ray Train, 1 worker"].append(ray_train(cfg, storage, f"train-{r}"))
        times["Ray Tune, 1 trial"].append(ray_tune(cfg, storage, f"tune-{r}"))
        empty.append(ray_train_empty(cfg, storage, f"empty-{r}"))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
              + f", Ray Train with no epochs {empty[-1]:.1f} s", flush=True)
    base = min(times["plain loop"])
    rows = [f"| {k} | {min(v):.1f} | {' / '.join(f'{x:.1f}' for x in v)} | {min(v) / base:.2f} | "
            f"{100 * (min(v) / base - 1):+.0f} % |" for k, v in times.items()]
    epochs = cfg["epochs_f"] + cfg["epochs_mask"] + cfg["epochs_adv"]
    fixed, setup = min(empty), plain_setup(cfg)
    per_epoch = (min(times["Ray Train, 1 worker"]) - base - (fixed - setup)) / epochs
    text = f"""
The same training through the plain loop, Ray Train (one worker given all {CPUS} cores, as the
plain loop uses them) and Ray Tune (one trial fitting that Ray Train run, as `platform.sweep`
does for a trial with several workers; a one-worker trial trains in its own Tune process, see
*Per-trial tax*); each mode's fastest of {args.repeats} alternating repeats. Config: the adversarial method
on the offline digits, widths {cfg['widths']}, batch {cfg['batch_size']}, {epochs} epochs
({cfg['epochs_f']} + {cfg['epochs_mask']} + {cfg['epochs_adv']}), a checkpoint every epoch in
every mode. Machine: {CPUS} CPU cores, torch {torch.__version__}, ray {ray.__version__}.

| path | best (s) | repeats (s) | × plain | overhead |
|---|---|---|---|---|
{chr(10).join(rows)}

Where it goes: the same Ray Train run with no epochs takes {fixed:.1f} s — starting the controller
and worker processes and the process group, importing torch there, loading the data, building
the networks, tearing down — against {setup:.1f} s for the data and networks in the plain loop's
warm process. That fixed cost is {100 * (fixed - setup) / base:.0f} % of this run. The rest,
{per_epoch:+.2f} s per epoch ({100 * per_epoch * epochs / base:.0f} % of the run), is not the
reports or checkpoint uploads (about 0.01 s each, timed inside the worker); it is most likely
Ray's own processes (raylet, GCS, dashboard, the controller's polling) taking CPU from training
on {CPUS} cores (not measured apart). On a run ten times as long the fixed part would drop to
{100 * (fixed - setup) / (10 * base):.0f} %.
Starting the local Ray instance (`ray.init`, once per session, not in the figures): {start:.1f} s.
Measured on {time.strftime('%Y-%m-%d')} with:

    python benchmarks/ray_overhead.py --repeats {args.repeats}
"""
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "Ray overhead", text)
        print(f"wrote {ROOT / 'docs' / 'BENCHMARKS.md'} (section 'Ray overhead')")
    ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
