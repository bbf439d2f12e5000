"""What the platform costs per trial, side by side in one run: the same N configurations (Optuna's
TPE with one seed; its first 10 suggestions are its seeded random start-up draws, so every mode
gets the same list, which this script checks) trained to the end (no early stopping) three ways:

  (a) a plain Optuna loop in one process, the way a user would without the platform: the data
      read once, `train()` per trial, torch on all cores, no MLflow, no checkpoints;
  (b) `python -m platform.sweep --workers 1`: each trial trains in its own Tune process (reused
      from trial to trial), as many at once as the CPUs allow, every epoch checkpointed and in MLflow;
  (c) `python -m platform.sweep --workers 2`: each trial a 2-worker Ray Train (DDP) run.

Wall time is the user's: from starting the command to its end (imports, Ray's start, scoring the
best trial). Writes the table to docs/BENCHMARKS.md, section "Per-trial tax".

    python benchmarks/trial_tax.py [--trials 4] [--no-write]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from backdrop import experiments
from doc_sections import write_section  # benchmarks/, on sys.path as the script's folder

ROOT = Path(__file__).resolve().parents[1]
CPUS = os.cpu_count() or 1
SEED = 0
# The offline digits at the paper's widths: about a minute per trial in the plain loop on 2 cores.
FIXED = {"method": "adversarial", "dataset": "digits", "batch_size": 64, "epochs_f": 8, "epochs_mask": 3, "epochs_adv": 8}
SEARCHED = {"lr_f": {"loguniform": [5.0e-4, 5.0e-3]}, "lr_m": {"loguniform": [1.0e-4, 1.0e-2]},
            "lr_b": {"loguniform": [1.0e-5, 1.0e-3]}, "ascent_per_descent": {"choice": [0.5, 1, 2]},
            "noise_dim": {"choice": [1, 4]}, "tiles": {"choice": [1, 2, 4]}}

B = "(b) platform.sweep, 1 worker per trial"
PLAIN = """
import json, sys, time
import optuna
from backdrop.data import load_dataset
from backdrop.search_space import parse
from backdrop.train import train

space = parse(json.loads(sys.argv[1]), "trial_tax")
splits = load_dataset("digits", seed=space.base_config()["seed"])
optuna.logging.set_verbosity(optuna.logging.WARNING)

def objective(trial):
    space.suggest(trial)
    worst = []
    train(space.config(trial.params), splits, on_epoch=lambda end: end.val and worst.append(end.val["worst"]))
    print(f"trial {trial.number}: val worst {worst[-1]:.3f}", flush=True)
    return worst[-1]

study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=int(sys.argv[3])))
study.optimize(objective, n_trials=int(sys.argv[2]))
print("PARAMS " + json.dumps([t.params for t in study.trials]))
"""


def epochs():
    return FIXED["epochs_f"] + FIXED["epochs_mask"] + FIXED["epochs_adv"]


def timed(cmd, env=None):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return wall, proc.stdout


def plain(space, trials):
    wall, out = timed([sys.executable, "-c", PLAIN, json.dumps(space), str(trials), str(SEED)])
    params = json.loads(out.split("PARAMS ", 1)[1])
    return wall, [normal(p) for p in params]


def platform_sweep(space, trials, workers, tmp):
    import mlflow
    name = f"tax-{workers}w"
    path = Path(tmp) / f"{name}.yaml"
    # sort_keys=False: the searched keys in the order (a) suggests them, so TPE draws the same configs
    path.write_text(yaml.safe_dump({**space, "sweep": {"trials": trials, "seed": SEED, "grace_period": epochs()}},
                                   sort_keys=False))
    uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
    wall, out = timed([sys.executable, "-m", "platform.sweep", "--space", str(path), "--name", name,
                       "--workers", str(workers), "--storage-path", str(Path(tmp) / "ray"), "--tracking-uri", uri,
                       "--no-register", "--device", "cpu"])
    assert "stopped early" not in out, out
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiments.SWEEPS)
    runs = client.search_runs([exp.experiment_id], f"tags.`backdrop.sweep` = '{name}' and tags.`backdrop.role` = 'trial'")
    return wall, [normal({k: r.data.params[k] for k in SEARCHED}) for r in runs]


def normal(params):
    """A config as comparable text: floats to 6 significant digits (MLflow keeps them as strings)."""
    return json.dumps({k: f"{float(v):.6g}" for k, v in sorted(params.items())})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = p.parse_args()
    if args.trials > 10:
        sys.exit("--trials at most 10: beyond TPE's random start-up draws the modes' configs would differ")
    space = {"fixed": FIXED, **SEARCHED}
    results = {}
    with tempfile.TemporaryDirectory(prefix="trial_tax_") as tmp:
        results["(a) plain Optuna loop, one process"] = plain(space, args.trials)
        print(f"(a) {results['(a) plain Optuna loop, one process'][0]:.1f} s", flush=True)
        for workers, label in ((1, B), (2, "(c) platform.sweep, 2 workers per trial")):
            results[label] = platform_sweep(space, args.trials, workers, tmp)
            print(f"{label[:3]} {results[label][0]:.1f} s", flush=True)
    configs = [sorted(c) for _, c in results.values()]
    same = all(c == configs[0] for c in configs)
    base = results["(a) plain Optuna loop, one process"][0]
    rows = [f"| {k} | {wall:.0f} | {wall / args.trials:.1f} | {wall / base:.2f} |" for k, (wall, _) in results.items()]
    text = f"""
The same {args.trials} configurations (Optuna TPE, seed {SEED}: its seeded random start-up draws),
each trained to the end (no early stopping): the adversarial method on the offline digits at the
default widths, batch {FIXED['batch_size']}, {epochs()} epochs ({FIXED['epochs_f']} + {FIXED['epochs_mask']} + {FIXED['epochs_adv']}).
Wall time from starting the command to its end, as a user waits for it (imports, Ray's start,
the sweep's scoring of its best trial included). The configs were {'the same in all three modes (checked)' if same else 'NOT the same in every mode: read the ratios with care'}.
Machine: {CPUS} CPU cores, otherwise idle (other load slows (a), whose two threads wait on each
other, more than (b): compare only idle runs).

| mode | wall (s) | per trial (s) | × (a) |
|---|---|---|---|
{chr(10).join(rows)}

(a) trains one trial at a time with torch on all cores, no MLflow and no checkpoints; (b) runs
{CPUS} one-worker trials at once (one core each), each epoch checkpointed and logged to MLflow,
the process of a finished trial reused by the next; (c) runs each trial as a 2-worker Ray Train
(DDP) run. The platform's cost over the plain loop, (b) against (a): {100 * (results[B][0] / base - 1):+.0f} % (target:
within 10 %). Data-parallel trials of networks this small pay for DDP on 2 cores; they are for
GPUs and several nodes. Measured on {time.strftime('%Y-%m-%d')} with:

    python benchmarks/trial_tax.py --trials {args.trials}
"""
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "Per-trial tax", text)
        print(f"wrote {ROOT / 'docs' / 'BENCHMARKS.md'} (section 'Per-trial tax')")


if __name__ == "__main__":
    main()
