"""Hyperparameter sweeps: Ray Tune proposes configs with Optuna's TPE sampler, each trial trains
them (in its own process with one worker, as a data-parallel Ray Train run with several), ASHA
stops poor trials early, and MLflow records everything (sweep_tracking.py). `python -m
platform.sweep` is the command line.

The objective never looks at the six test backgrounds: it is `val/worst`, the worst accuracy over
the *validation* background families (other patterns than the test ones, see backgrounds.py) on
the validation split, measured after every epoch. With `seeds` > 1 every suggested config trains
once per seed and its objective is its *worst seed's* final `val/worst` (a config that fails in one
seed in K loses, however good its mean): the platform's promise is per seed. `--multi-objective` searches the trade-off
between `val/clean` and `val/worst` and reports the Pareto front instead (no ASHA then: pruning
needs a single metric). Only the selected trial(s) are then scored on the test suite, from their
final checkpoint.

A trial with one worker trains inside its own Tune process (worker.py's TuneSession: no Train
controller, worker group or process group to start), and Tune reuses that process for the next
trial, so imports stay warm; the trainable and the options live in trial.py, which (with what
training needs) is all a trial's process imports. A trial with several workers is a plain
function that builds and fits a Ray Train TorchTrainer (DDP; Ray Train V2), named after the
trial. Either way a restarted trial resumes from its last checkpoint. The driver reads the data
set once and every trial carves its splits from that copy in Ray's object store.
"""
import json
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.fs
import numpy as np
from ray.tune import Callback
from ray.tune.search import Repeater
from ray.tune.stopper import Stopper

from . import tracking
from .data import data_dir_for_workers, source_of, splits_of
from .checkpoints import checkpoint_at, storage_uri
from .distributed import connect, cpus_free, free_placement_group, load_trained
from .ray_internals import orphaned_placement_groups
from .worker import USER_ERROR, raise_user_error
from .errors import UserError
from .results import TEST_COLUMNS, markdown_table, pct
from .search_space import SEED_INDEX, SWEEP_KEYS, SearchSpace
from .sweep_tracking import MLflowSweepCallback, SweepRecorder
from .trial import DEFAULT_EXPERIMENT, SweepOptions, trial_cpus, trial_main, trial_resources

OBJECTIVE = "val/worst"
OBJECTIVES = ("val/clean", "val/worst")   # multi-objective mode, both maximised
SPEC_FILE = "backdrop_sweep.json"


# ---------------------------------------------------------------- the sweep

def total_epochs(cfg):
    """(epochs of the whole schedule, the phases): ASHA's time axis is the global epoch count."""
    from .algorithms import get_algorithm
    phases = get_algorithm(cfg["method"]).schedule(cfg)
    return sum(p.epochs for p in phases), phases


class Progress(Callback):
    """One line per trial event on the console (Tune's own tables are switched off), and, while
    trials wait for resources with nothing else to report, one line every `every_s` seconds."""

    def __init__(self, epochs, every_s=15.0):
        self.epochs, self.every_s = epochs, every_s
        self._last = time.monotonic()

    def on_step_begin(self, iteration, trials, **info):
        waiting = [t for t in trials if t.status == "PENDING"]
        if waiting and time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            print(f"[{time.strftime('%H:%M:%S')}] waiting: {len(waiting)} trial(s) pending, "
                  f"{sum(t.status == 'RUNNING' for t in trials)} running ({cpus_free()})", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._last = time.monotonic()
        values = " ".join(f"{k}={fmt(v)}" for k, v in sorted(trial.config.items()))
        print(f"[{time.strftime('%H:%M:%S')}] trial {trial.trial_id} started: {values}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._last = time.monotonic()
        if USER_ERROR in result:
            print(f"[{time.strftime('%H:%M:%S')}] trial {trial.trial_id} stopped on bad input: {result[USER_ERROR]}",
                  flush=True)
            return
        print(f"[{time.strftime('%H:%M:%S')}] trial {trial.trial_id} epoch {result.get('step')}/{self.epochs}: "
              f"val clean {pct(result.get('val/clean'))} worst {pct(result.get(OBJECTIVE))}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        done = "completed" if trial.last_result.get("last") else "stopped early by ASHA"
        print(f"[{time.strftime('%H:%M:%S')}] trial {trial.trial_id} {done}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{time.strftime('%H:%M:%S')}] trial {trial.trial_id} failed (see the error above)", flush=True)


class StopOnUserError(Stopper):
    """Bad input met in one trial's workers would be met by every trial: stop the whole sweep."""

    def __init__(self):
        self.seen = False

    def __call__(self, trial_id, result):
        self.seen = self.seen or USER_ERROR in result
        return USER_ERROR in result

    def stop_all(self):
        return self.seen


class FreeOrphanedResources(Callback):
    """Gives back the CPUs/GPUs of Train runs whose trial Tune has stopped. Tune stops a trial by
    killing its actor (ASHA does so at every trial's last epoch, and to losers earlier); its Train
    controller dies with it, often before removing its workers' placement group. Ray Train's own
    cleaner removes that group only once the dashboard's State API answers; when the dashboard
    is down or slow, the next trial waited for those CPUs forever (a CI run hung so)."""

    def __init__(self, every_s=2.0):
        self.every_s, self._last = every_s, 0.0

    def on_step_begin(self, iteration, trials, **info):
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            for pg in orphaned_placement_groups():
                free_placement_group(pg)


def concurrency(opts):
    """Trials at once: each needs what `trial_resources` says plus, with several workers, each
    worker's CPUs and GPUs."""
    import ray
    if opts.max_concurrent:
        return opts.max_concurrent
    have = ray.cluster_resources()
    # (a small epsilon: 2 / 0.1 is 19.999... in binary floating point)
    fit = int(have.get("CPU", 1) / trial_cpus(opts) + 1e-9)
    if opts.gpus_per_worker:
        fit = min(fit, int(have.get("GPU", 0) / (opts.gpus_per_worker * opts.workers) + 1e-9))
    return max(1, fit)


class WorstSeed(Repeater):
    """Ray Tune's Repeater (each suggestion trained `repeat` times, with the repeat index in the
    trial config: our seed offset), but the searcher learns the *worst* repeat's score, not the
    mean: Optuna then steers towards configs that hold in every seed."""

    def on_trial_complete(self, trial_id, result=None, **kwargs):
        group = self._trial_id_to_group[trial_id]
        score = result.get(self.searcher.metric, np.nan) if result else np.nan
        group.report(trial_id, score)
        if group.finished_reporting():
            scores = np.array(group.scores(), dtype=float)
            # A seed that crashed or never scored leaves the config's worst seed unknown: Optuna
            # records the config as a failed trial (it loses), never as its surviving seeds' best.
            if np.isnan(scores).any():
                self.searcher.on_trial_complete(group.primary_trial_id, result=None, error=True)
                return
            worst = scores.min() if self.searcher.mode == "max" else scores.max()
            self.searcher.on_trial_complete(group.primary_trial_id, result={self.searcher.metric: worst}, **kwargs)


def build_tuner(opts: SweepOptions, resume=False, source=()):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    # Tune snapshots its state whenever a trial has checkpointed num_to_keep times since the last
    # snapshot (so a resume never points at a deleted checkpoint), and warns each time it does;
    # with a checkpoint per epoch of short epochs that is by design here. Set it yourself to see it.
    # On remote storage (s3://) the warning also tells of slow syncs: keep it there.
    if "://" not in opts.storage_path:
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    space = opts.search_space()
    trainable = tune.with_resources(tune.with_parameters(trial_main, opts=opts, source=list(source)),
                                    trial_resources(opts))
    if resume:
        return tune.Tuner.restore(opts.path, trainable, resume_unfinished=True, resume_errored=True)
    epochs, phases = total_epochs(space.base_config())
    if not epochs:
        raise UserError(f"{opts.space_path}: the schedule has no epochs (epochs_f, epochs_mask, epochs_adv)")
    if opts.multi_objective:
        searcher = OptunaSearch(space=space.suggest, metric=list(OBJECTIVES), mode=["max", "max"],
                                sampler=optuna.samplers.TPESampler(seed=opts.seed))
        scheduler = FIFOScheduler()
    elif opts.seeds > 1:
        # No early stopping: ASHA would compare one seed's epochs with another's and cut a
        # config's seeds unevenly (Ray's Repeater documentation says the same).
        searcher = WorstSeed(OptunaSearch(space=space.suggest, metric=OBJECTIVE, mode="max",
                                          sampler=optuna.samplers.TPESampler(seed=opts.seed)),
                             repeat=opts.seeds, set_index=True)
        scheduler = FIFOScheduler()
    else:
        searcher = OptunaSearch(space=space.suggest, metric=OBJECTIVE, mode="max",
                                sampler=optuna.samplers.TPESampler(seed=opts.seed))
        # Compare trials once the adversarial game has begun (earlier epochs train f alone).
        grace = opts.grace_period or max(1, epochs - [p for p in phases if p.epochs][-1].epochs + 1)
        scheduler = ASHAScheduler(time_attr="step", metric=OBJECTIVE, mode="max", max_t=max(epochs, 1),
                                  grace_period=min(grace, max(epochs, 1)), reduction_factor=2)
    recorder = SweepRecorder(opts.tracking_uri, opts.experiment, opts.name)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=opts.trials * opts.seeds,
                                    max_concurrent_trials=concurrency(opts),
                                    # a one-worker trial's process trains the next trial too (warm
                                    # imports); a Train run's driving function gains nothing from it
                                    reuse_actors=opts.in_trial),
        run_config=tune.RunConfig(name=opts.name, storage_path=opts.storage_path,
                                  callbacks=[MLflowSweepCallback(recorder, space.config, opts.storage_path, opts.data_dir), Progress(epochs),
                                             FreeOrphanedResources()],
                                  stop=StopOnUserError(), verbose=0,
                                  # a one-worker trial is its own worker: Tune restarts it from its
                                  # checkpoint; a Train run restarts its own workers
                                  failure_config=tune.FailureConfig(max_failures=opts.max_failures if opts.in_trial else 1),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )


def run_sweep(opts: SweepOptions, *, resume=False, address=None, device="cpu"):
    """Run (or resume) a sweep to the end; returns the summary dict (see `select_and_score`). Stopped
    early (Ctrl-C: Tune saves its state and returns), it raises KeyboardInterrupt."""
    from ray.tune import Tuner

    # A new sqlite store's tables take seconds of CPU to make: made while Ray starts its
    # processes, which the driver only waits for.
    with ThreadPoolExecutor(1) as pool:
        store = pool.submit(tracking.tracking_uri, opts.tracking_uri)
        connect(address, min_cpus=math.ceil(trial_cpus(opts)), dashboard=not opts.in_trial)  # trials in their own process start no Train run
        store.result()
    recorder = SweepRecorder(opts.tracking_uri, opts.experiment, opts.name)
    parent = recorder.parent(params={"space": opts.space_path, "trials": opts.trials, "workers": opts.workers,
                                     "gpus_per_worker": opts.gpus_per_worker, "objective": objective_name(opts),
                                     "sampler": f"TPE(seed={opts.seed})", "storage": opts.path,
                                     "seeds_per_config": opts.seeds})
    resume = resume and Tuner.can_restore(opts.path)   # killed before Tune saved anything: start it
    try:
        grid = build_tuner(opts, resume=resume, source=[shared_source(opts)]).fit()
        results = list(grid)
        for r in results:
            raise_user_error(r.metrics, f"sweep {opts.name}, trial {(r.metrics or {}).get('trial_id')}")
        if len(results) < opts.trials * opts.seeds or unfinished_trials(opts.path):
            raise KeyboardInterrupt
        dropped = recorder.drop_orphans([r.metrics["trial_id"] for r in results])
        summary = select_and_score(opts, results, recorder, device)
        summary["dropped_runs"] = dropped
        summary["experiment_id"] = recorder.experiment_id()
        log_summary(recorder, parent, summary, opts.search_space().params)
    except BaseException as e:
        recorder.client.set_terminated(parent, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    return summary


def unfinished_trials(path):
    """Trials whose saved state says not finished: what --resume continues. The ResultGrid cannot
    tell: on Ctrl-C Tune saves its state, then stops the running trials and marks them TERMINATED
    in memory, so an interrupted sweep would pass for a finished one."""
    from ray.tune import ExperimentAnalysis
    return [t.trial_id for t in ExperimentAnalysis(path).trials if t.status not in ("TERMINATED", "ERROR")]


def objective_name(opts):
    if opts.multi_objective:
        return " & ".join(OBJECTIVES) + " (Pareto)"
    return f"{OBJECTIVE}, worst of {opts.seeds} seeds" if opts.seeds > 1 else OBJECTIVE


def pareto_front(rows):
    """Rows not dominated on (val/clean, val/worst), both maximised."""
    def dominates(a, b):
        return all(a[k] >= b[k] for k in OBJECTIVES) and any(a[k] > b[k] for k in OBJECTIVES)
    return [r for r in rows if not any(dominates(o, r) for o in rows)]


def select_and_score(opts, results, recorder, device):
    """Pick the best trial(s) among those that finished their schedule, score them on the test
    suite from their final checkpoint, and log that to their MLflow runs."""
    space = opts.search_space()
    runs = recorder.trial_runs()
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append({"trial_id": m["trial_id"], "config": space.config(r.config or {}), "searched": r.config or {},
                     "completed": bool(m.get("last")), "error": r.error is not None,
                     "val/clean": m.get("val/clean", float("nan")), "val/worst": m.get(OBJECTIVE, float("nan")),
                     "step": m.get("step", 0), "checkpoint": checkpoint_path(r)})
    done = [row for row in rows if row["completed"] and row["checkpoint"]]
    if not done:
        raise UserError(f"sweep {opts.name}: no trial finished its schedule (see the errors above); "
                        f"records are in {opts.path}")
    if opts.seeds > 1:
        best, groups = best_over_seeds(opts, rows)
    elif opts.multi_objective:
        best = sorted(pareto_front(done), key=lambda row: -row["val/worst"])
    else:
        best = [max(done, key=lambda row: (row[OBJECTIVE], row["val/clean"]))]
    registered = None
    for i, row in enumerate(best):
        # The top trial (by val/worst) becomes the registered model's champion.
        row["test"], version = score_trial(row, runs[row["trial_id"]], opts, recorder, device,
                                           register=opts.register if i == 0 else "")
        registered = registered or version
    out = {"name": opts.name, "rows": rows, "best": best, "path": opts.path, "registered": registered}
    if opts.seeds > 1:
        out["configs"] = groups
    return out


def checkpoint_path(result):
    """A trial's last checkpoint: a Train run's, which its reports name (Tune holds none of its
    own then), or the one a one-worker trial gave Tune."""
    m = result.metrics or {}
    if m.get("checkpoint_path"):
        return m["checkpoint_path"]
    return result.checkpoint.path if result.checkpoint else None


def best_over_seeds(opts, rows):
    """Group the trials by their suggested config; a config counts only if every one of its seeds
    finished, and scores its worst seed's val/worst (ties: its worst val/clean). All seeds of the
    best config are scored on the test suite (the per-seed picture); the one with the best
    val/worst, a choice made on validation, becomes the registered model."""
    groups = {}
    for row in rows:
        key = tuple(sorted((k, str(v)) for k, v in row["searched"].items() if k != SEED_INDEX))
        groups.setdefault(key, []).append(row)
    summary = []
    def lowest(values):
        values = [v for v in values if v == v]                     # NaN: a trial with no score
        return min(values) if values else float("nan")

    for key, members in groups.items():
        # Optuna may suggest one config twice: its trials then hold each seed twice, and the
        # config counts once every seed has finished, scored by its worst trial.
        members.sort(key=lambda r: r["config"]["seed"])
        finished = {r["searched"].get(SEED_INDEX) for r in members if r["completed"] and r["checkpoint"]}
        complete = finished >= set(range(opts.seeds)) and all(r["completed"] and r["checkpoint"] for r in members)
        summary.append({"searched": dict(key), "trials": [r["trial_id"] for r in members],
                        "seeds": [r["config"]["seed"] for r in members], "complete": complete,
                        "val/worst": lowest(r["val/worst"] for r in members),
                        "val/clean": lowest(r["val/clean"] for r in members)})
    complete = [g for g in summary if g["complete"]]
    if not complete:
        raise UserError(f"sweep {opts.name}: no config finished all {opts.seeds} of its seeds "
                        f"(see the errors above); records are in {opts.path}")
    top = max(complete, key=lambda g: (g["val/worst"], g["val/clean"]))
    top["best"] = True
    chosen = sorted((r for r in rows if r["trial_id"] in top["trials"]), key=lambda r: -r["val/worst"])
    return chosen, summary


CHAMPION = "champion"     # the alias of a registered model's current best: models:/NAME@champion


def score_trial(row, run_id, opts, recorder, device, register=""):
    """Score a selected trial on the test suite and log its figures and MLflow Model; with
    `register`, the model becomes a new version of that registered model, aliased `champion`.
    Returns (test scores, "NAME/VERSION" or None)."""
    from . import records
    from .job import score
    cfg = row["config"]
    splits = splits_of(cfg, opts.data_dir)
    algorithm = load_trained(checkpoint_at(row["checkpoint"], opts.storage_path), cfg, splits, device)
    scored = score(algorithm, splits, device, label=f"trial {row['trial_id']}")
    test = scored["test"]
    info = records.finish_run(recorder.client, run_id, scored, registered_name=register or None)
    recorder.client.set_tag(run_id, "backdrop.best", "pareto" if opts.multi_objective else "best")
    if not register:
        return test, None
    version = str(info.registered_model_version)
    client = recorder.client
    client.set_registered_model_alias(register, CHAMPION, version)
    for k, v in {"sweep": opts.name, "trial": row["trial_id"], "val_worst": row["val/worst"],
                 "val_clean": row["val/clean"], "dataset": cfg["dataset"]}.items():
        client.set_model_version_tag(register, version, k, str(v))
    return test, f"{register}/{version}"


def tables(summary, searched_keys):
    """The sweep's trials (validation only) and the selected trial(s)' test-suite accuracies."""
    keys = sorted(searched_keys)
    trial_rows = [[r["trial_id"], "completed" if r["completed"] else ("error" if r["error"] else f"stopped at {r['step']}"),
                   *(fmt(r["searched"].get(k)) for k in keys), pct(r["val/clean"]), pct(r["val/worst"])]
                  for r in summary["rows"]]
    if any(SEED_INDEX in r["searched"] for r in summary["rows"]):
        trial_rows = [[*row[:2], r["config"]["seed"], *row[2:]] for row, r in zip(trial_rows, summary["rows"])]
        trials_md = markdown_table(["trial", "outcome", "seed", *keys, "val clean", "val worst"], trial_rows)
    else:
        trials_md = markdown_table(["trial", "outcome", *keys, "val clean", "val worst"], trial_rows)
    cols = [c for c in TEST_COLUMNS if c in summary["best"][0]["test"]]
    best_md = markdown_table(["trial", "val clean", "val worst", *(f"test {c}" if c in ("clean", "mean", "worst") else c
                                                                  for c in cols)],
                             [[r["trial_id"], pct(r["val/clean"]), pct(r["val/worst"]), *(pct(r["test"][c]) for c in cols)]
                              for r in summary["best"]])
    if "configs" in summary:
        config_md = markdown_table(
            ["config (trials)", *keys, "seeds", "val worst, worst seed", "chosen"],
            [[",".join(g["trials"]), *(fmt(g["searched"].get(k)) for k in keys),
              " ".join(map(str, g["seeds"])) + ("" if g["complete"] else " (incomplete)"),
              pct(g["val/worst"]), "yes" if g.get("best") else ""] for g in summary["configs"]])
        trials_md = f"{trials_md}\n\nBy config (the objective: each config's worst seed):\n\n{config_md}"
    return trials_md, best_md


def fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def log_summary(recorder, parent, summary, searched_keys):
    client = recorder.client
    best = summary["best"][0]
    client.set_tag(parent, "best_trials", ",".join(r["trial_id"] for r in summary["best"]))
    client.log_metric(parent, "best/val_worst", best["val/worst"])
    if "configs" in summary:
        chosen = next(g for g in summary["configs"] if g.get("best"))
        client.log_metric(parent, "best/val_worst_over_seeds", chosen["val/worst"])
    for k, v in best["test"].items():
        client.log_metric(parent, f"best/test/{k}", v)
    trials_md, best_md = tables(summary, searched_keys)
    client.log_text(parent, f"# Sweep {summary['name']}\n\n## Trials\n\n{trials_md}\n\n"
                            f"## Test suite of the selected trial(s)\n\n{best_md}\n", "sweep_summary.md")
    client.set_terminated(parent, "FINISHED")


# ---------------------------------------------------------------- options: new sweep or resumed one

def new_options(space: SearchSpace, flags: dict) -> SweepOptions:
    """Flags (None = not given) over the space file's `sweep:` section over the defaults."""
    def pick(key):
        return flags.get(key) if flags.get(key) is not None else space.sweep.get(key, SWEEP_KEYS[key].default)
    name = check_name(flags.get("name") or f"{Path(space.path).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    opts = SweepOptions(
        name=name, space=space.to_dict(), space_path=space.path, trials=pick("trials"), workers=pick("workers"),
        gpus_per_worker=float(pick("gpus_per_worker")), cpus_per_worker=float(pick("cpus_per_worker")),
        max_concurrent=pick("max_concurrent"), seed=pick("seed"), grace_period=pick("grace_period"), seeds=pick("seeds"),
        one_worker_in_trial=True,
        multi_objective=bool(flags.get("multi_objective")),
        data_dir=data_dir_for_workers(flags.get("data_dir")),
        storage_path=storage_uri(flags.get("storage_path")),
        tracking_uri=tracking.tracking_uri(flags.get("tracking_uri"), create=False),     # made in run_sweep
        experiment=flags.get("experiment") or DEFAULT_EXPERIMENT,
        register="" if flags.get("no_register") else check_name(flags.get("register") or default_model_name(space.path),
                                                                 "--register"))
    if flags.get("no_register") and flags.get("register"):
        raise UserError("--register and --no-register contradict each other; keep one")
    if opts.seeds > 1 and opts.multi_objective:
        raise UserError("--seeds and --multi-objective do not combine (the worst seed is one objective); drop one")
    if opts.seeds > 1 and "seed" in space.params:
        raise UserError(f"{space.path}: 'seed' is searched, but --seeds sets each trial's seed; search one or the other")
    if opts.seeds > 1 and space.sweep.get("grace_period"):
        raise UserError(f"{space.path}: 'sweep.grace_period' is ASHA's, and a sweep over seeds has no ASHA; drop it")
    for key in ("trials", "workers", "seeds"):
        if getattr(opts, key) < 1:
            raise UserError(f"--{key} must be at least 1, got {getattr(opts, key)}")
    if opts.gpus_per_worker < 0 or opts.max_concurrent < 0:
        raise UserError("--gpus-per-worker and --max-concurrent must not be negative")
    if opts.cpus_per_worker <= 0:
        raise UserError(f"--cpus-per-worker must be above 0 (0.5: two one-worker trials share a CPU), "
                        f"got {opts.cpus_per_worker:g}")
    if exists(f"{opts.path}/{SPEC_FILE}"):
        raise UserError(f"sweep '{name}' already exists in {opts.storage_path}; continue it with "
                        f"--resume --name {name}, or choose another --name")
    check_data(opts)
    return opts


def shared_source(opts):
    """The sweep's data set, read once here and put in Ray's object store: every trial (and every
    Train worker) carves its seeded splits from this copy, so none reads the files again or needs
    them on its own node's disk."""
    import ray
    return ray.put(source_of(opts.search_space().base_config(), opts.data_dir))


def check_data(opts):
    """A missing data dir or file fails here, in one line, not in every trial's workers."""
    source_of(opts.search_space().base_config(), opts.data_dir)


def resume_command(opts):
    storage = "" if opts.storage_path == storage_uri(None) else f" --storage-path {opts.storage_path}"
    return f"python -m platform.sweep --resume --name {opts.name}{storage}"


def check_name(name, flag="--name"):
    """A sweep name is a folder name and an MLflow tag value (a model name is a URI part): keep
    it plain."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"{flag} {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def default_model_name(space_path):
    """The registered model a sweep's winner joins by default: one per search space."""
    return f"backdrop-{Path(space_path).stem}"


def save_options(opts: SweepOptions):
    fs, path = pyarrow.fs.FileSystem.from_uri(f"{opts.path}/{SPEC_FILE}")
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(opts.__dict__, indent=1).encode())


def load_options(storage_path, name=None) -> SweepOptions:
    """The saved options of sweep `name` (default: the latest sweep under a local storage path)."""
    storage = storage_uri(storage_path)
    if name is None:
        if "://" in storage:
            raise UserError("--resume needs --name with a remote --storage-path")
        saved = sorted(Path(storage).glob(f"*/{SPEC_FILE}"), key=lambda p: p.stat().st_mtime)
        if not saved:
            raise UserError(f"--resume: no sweep to resume in {storage}")
        name = saved[-1].parent.name
    check_name(name)
    uri = f"{storage.rstrip('/')}/{name}/{SPEC_FILE}"
    if not exists(uri):
        raise UserError(f"--resume: no sweep named '{name}' in {storage}")
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as f:
        opts = SweepOptions(**json.loads(f.read().decode()))
    opts.storage_path = storage   # the sweep may have moved with its folder
    check_data(opts)
    return opts


def check_same_records(opts, flags):
    """A resumed sweep keeps writing where it started; flags may repeat, not change, that."""
    given = {"tracking_uri": tracking.tracking_uri(flags["tracking_uri"], create=False) if flags.get("tracking_uri")
             else None,
             "experiment": flags.get("experiment"),
             "data_dir": data_dir_for_workers(flags["data_dir"]) if flags.get("data_dir") else None}
    for key, value in given.items():
        if value is not None and value != getattr(opts, key):
            raise UserError(f"--resume: sweep {opts.name} uses --{key.replace('_', '-')} {getattr(opts, key)}; "
                            f"drop --{key.replace('_', '-')} {value}")


def exists(uri):
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound
