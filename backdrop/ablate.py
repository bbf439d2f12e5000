"""Run an ablation: the spec and its reference, same seeds and budget, as parallel Ray tasks;
record them in MLflow; compare them from what MLflow holds.

MLflow layout (experiment `backdrop-ablations` by default):
- a parent run per ablation, tagged `ablation`, `reference`, `git_commit`, `dataset`; after each
  invocation it carries the comparison (`comparison.md`, metrics `delta/<background>`, ...) and
  `ablation.json`, the run ids behind it;
- a child run per (spec, seed) (`mlflow.parentRunId`), tagged `spec`, `seed`, `config_key`
  (a hash of the full config) and `git_commit`, and `role.<ablation>` = reference | variant for
  every ablation that uses it (a shared reference run nests under one parent only).
A run is identified by (config_key, git_commit), config_key covering a user's data set's files
too (specs.run_key): a FINISHED run with the same pair is reused
instead of retrained, so re-running resumes, and the reference's runs are shared by every
ablation with the same dataset, seeds and budget. Uncommitted edits do not change the commit:
pass `rerun=True` (--rerun) to retrain after changing code without committing.

Only this driver writes to MLflow (records.py says why); tasks return records.
"""
import json
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from . import experiments, records, specs as S, tracking
from .distributed import cluster_address, cpus_free
from .backgrounds import TEST_FAMILIES
from .data import data_dir_for_workers, source_of, splits_of
from .errors import UserError
from .job import train_task
from .stats import PairedDelta, mean_sd, paired_delta

DEFAULT_EXPERIMENT = experiments.ABLATIONS
ROWS = ("clean", *TEST_FAMILIES, "mean", "worst")     # the comparison table's rows (+ photos on colour data)
# Ray workers get the library from here (ship `backdrop/`, never `platform/`: see platform/__init__).
RUNTIME_ENV = {"py_modules": [str(Path(__file__).resolve().parent)]}


# ------------------------------------------------------------------------------------- MLflow
def _one(client, exp_id, filters, finished=True):
    """The newest run matching all `tags.<k> = v` filters (and FINISHED), or None."""
    clauses = [f"tags.`{k}` = '{v}'" for k, v in filters.items()]
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    runs = client.search_runs([exp_id], " and ".join(clauses), max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def reusable_runs(client, exp_id, jobs, commit):
    """{config key: run id} of the jobs that already have a FINISHED run of the same config key
    at the same commit: the same command at the same commit finishes a set rather than redoing it."""
    found = {}
    for job in jobs:
        run = _one(client, exp_id, {"config_key": job.key, "git_commit": commit})
        if run:
            found[job.key] = run.info.run_id
    return found


def parent_key(plan):
    """Identity of an ablation's parent run: the spec, its reference, dataset and budget (not seeds)."""
    def no_seed(job):
        return {k: v for k, v in job.cfg.items() if k != "seed"}
    return S.config_key({"ablation": plan.spec.name, "variant": no_seed(plan.jobs[1]), "reference": no_seed(plan.jobs[0])})


def open_parent(client, exp_id, plan, commit):
    """Reuse this ablation's parent run for the same commit and budget, else create it."""
    key = parent_key(plan)
    found = _one(client, exp_id, {"ablation_key": key, "git_commit": commit}, finished=False)
    if found:
        client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id
    spec = plan.spec
    run = client.create_run(exp_id, run_name=f"{spec.name} vs {plan.reference.name}", tags=tracking.source_tags(**{
        "ablation": spec.name, "reference": plan.reference.name, "git_commit": commit,
        "dataset": plan.dataset, "ablation_key": key, "mlflow.note.content": spec.description}))
    params = [Param("reference", plan.reference.name), Param("dataset", plan.dataset)]
    params += [Param(f"change.{k}", str(v)) for k, v in spec.changes.items()]
    params += [Param(f"budget.{k}", str(v)) for k, v in plan.budget.items()]
    client.log_batch(run.info.run_id, params=params[:100])
    return run.info.run_id


# ---------------------------------------------------------------------------------------- Ray
def check_reachable(address, timeout=5.0, named_by="--address"):
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) nobody listens on: ray.init itself retries
    an unreachable GCS for minutes. 'auto' and 'local' are left to Ray."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{named_by} {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        drop = "drop --address" if named_by == "--address" else "unset RAY_ADDRESS"
        raise UserError(f"cannot reach a Ray cluster at {address} ({named_by}; {e.strerror or e}); "
                        f"start one with `ray start --head` or {drop} for a local instance") from None


@contextmanager
def ray_session(address=None):
    """Use the caller's Ray (already initialised), else connect to `address`, else to
    $RAY_ADDRESS (which `ray job submit` sets, as Ray Train placements honour it too), else start
    a new local instance: address="local", because a bare ray.init() silently joins whatever
    cluster was started last on this machine. No dashboard: it only slows a short-lived local start."""
    if ray.is_initialized():
        yield
        return
    named_by = "--address" if address else "$RAY_ADDRESS"
    address = cluster_address(address)
    kwargs = {"runtime_env": RUNTIME_ENV, "logging_level": "WARNING"}
    try:
        if address:
            check_reachable(address, named_by=named_by)
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", include_dashboard=False, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot start or reach Ray at {address or 'a new local instance'}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _last_line(e):
    text = str(e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def _cause(e):
    """A task's own exception (Ray wraps it in a RayTaskError that is also an instance of it)."""
    return getattr(e, "cause", None) or e


WAIT_NOTICE_S = 60.0       # a line while no run has finished for this long


def train_jobs(client, exp_id, jobs, tags, data_dir, address, say, with_noise=True, gpus_per_run=0.0, nest=None):
    """Train `jobs` as Ray tasks; log each run as soon as its task returns. {key: run_id}.
    `gpus_per_run`: a GPU share per task (0.25: four runs at once on each GPU), 0 for the CPU.
    `nest`: {job key: (parent run id, tags)} for runs that belong under an ablation's parent."""
    nest = nest or {}
    done, failures = {}, []
    with ray_session(address):
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if gpus_per_run and not ray.cluster_resources().get("GPU", 0):
            raise UserError(f"--gpus-per-run {gpus_per_run:g}: Ray sees no GPU; drop the flag or join a cluster with GPUs")
        share = f", {gpus_per_run:g} GPU" if gpus_per_run else ""
        say(f"training {len(jobs)} run(s) as Ray tasks on {cpus} CPU(s), 1 CPU{share} each")
        task = train_task.options(num_gpus=gpus_per_run) if gpus_per_run else train_task
        device = "cuda" if gpus_per_run else "cpu"
        # Each data set is read once, here, and reaches every task through Ray's object store.
        sources = {}
        for j in jobs:
            key = (j.cfg["dataset"], j.cfg["image_size"])
            if key not in sources:
                sources[key] = ray.put(source_of(j.cfg, data_dir))
        pending = {task.remote(j.cfg, data_dir, with_noise, sources[j.cfg["dataset"], j.cfg["image_size"]], device): j
                   for j in jobs}
        started = time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_NOTICE_S)
            if not ready:       # a long run, or tasks queued for CPUs: say so, never look hung
                say(f"  waiting: {len(pending)} run(s) not finished after {time.monotonic() - started:.0f} s "
                    f"({cpus_free()})")
                continue
            [ref] = ready
            job = pending.pop(ref)
            name = f"{job.spec} seed {job.seed}"
            try:
                record = ray.get(ref)
            except ray.exceptions.RayError as e:      # the others go on: their runs are kept
                failures.append((name, e))
                say(f"  [{len(done) + len(failures)}/{len(jobs)}] {name} FAILED: {_last_line(_cause(e))}")
                continue
            parent_id, own_tags = nest.get(job.key, (None, {}))
            run_id = records.write_record(client, exp_id, record, run_name=f"{job.spec} s{job.seed}",
                                          parent_run_id=parent_id,
                                          tags={**tags, **own_tags, "spec": job.spec, "seed": job.seed,
                                                "config_key": job.key})
            done[job.key] = run_id
            t = record["test"]
            say(f"  [{len(done) + len(failures)}/{len(jobs)}] {name}: {(record['end'] - record['start']) / 1000:.0f} s, "
                f"test clean {100 * t['clean']:.1f} mean {100 * t['mean']:.1f} worst {100 * t['worst']:.1f} "
                f"-> run {run_id}")
    if failures:
        bugs = [e for _, e in failures if not isinstance(_cause(e), UserError)]
        if bugs:
            raise bugs[0]                               # with the task's own traceback
        raise UserError(f"{len(failures)} run(s) failed ({'; '.join(f'{n}: {_cause(e)}' for n, e in failures)}); "
                        "finished runs are kept")
    return done


def run_configs(configs, *, experiment, tags, tracking_uri=None, data_dir=None, address=None, rerun=False,
                with_noise=True, gpus_per_run=0.0, say=print):
    """A benchmark's runs, {(name, seed): cfg}, as Ray tasks; a FINISHED run of the same config
    (and, for a user's data set, the same files) at the same commit is reused (unless `rerun`), so
    the same command finishes a set rather than redoing it. Returns {(name, seed): run id}."""
    data_dir = data_dir_for_workers(data_dir)       # Ray tasks run in working directories of their own
    splits_of(next(iter(configs.values())), data_dir)                # bad data: fail before Ray
    client = MlflowClient(tracking.tracking_uri(tracking_uri))
    exp_id = tracking.experiment_id(client, experiment)
    jobs = {(name, seed): S.Job("benchmark", name, seed, cfg, S.run_key(cfg)) for (name, seed), cfg in configs.items()}
    run_of = {} if rerun else reusable_runs(client, exp_id, jobs.values(), tracking.git_commit())
    todo = [j for j in jobs.values() if j.key not in run_of]
    say(f"{len(run_of)} finished run(s) of the same config and commit reused, {len(todo)} to train")
    if todo:
        run_of.update(train_jobs(client, exp_id, todo, tags, data_dir, address, say, with_noise=with_noise,
                                 gpus_per_run=gpus_per_run))
    return {k: run_of[j.key] for k, j in jobs.items()}


# ---------------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Row:
    name: str
    reference: tuple         # per seed, in plan order
    variant: tuple
    delta: PairedDelta


@dataclass(frozen=True)
class Comparison:
    ablation: str
    reference: str
    dataset: str
    seeds: tuple
    rows: tuple
    runs: dict               # {"reference": [run ids], "variant": [run ids]}, in seed order
    parent_run_id: str = ""


def compare(client, plan, run_of, parent_run_id=""):
    """The comparison, computed from the `test/*` metrics MLflow holds for each run."""
    runs = {side: [run_of[j.key] for j in plan.side(side)] for side in ("reference", "variant")}
    metrics = {rid: client.get_run(rid).data.metrics for rid in set(runs["reference"] + runs["variant"])}
    rows = []
    # A colour data set's suite has a photos family too; its runs report it, Table 1's do not.
    photos = ("photos",) if all("test/photos" in m for m in metrics.values()) else ()
    for name in ("clean", *TEST_FAMILIES, *photos, "mean", "worst"):
        ref = tuple(metrics[r][f"test/{name}"] for r in runs["reference"])
        var = tuple(metrics[r][f"test/{name}"] for r in runs["variant"])
        rows.append(Row(name, ref, var, paired_delta(var, ref)))
    return Comparison(plan.spec.name, plan.reference.name, plan.dataset, plan.seeds, tuple(rows), runs, parent_run_id)


def log_comparison(client, parent_id, comparison, table):
    """Summary metrics on the parent (comparable across ablations in the runs table) + files."""
    now, metrics = tracking.now_ms(), []
    for r in comparison.rows:
        values = {"reference": mean_sd(r.reference)[0], "variant": mean_sd(r.variant)[0], "delta": r.delta.mean,
                  "delta_low": r.delta.low, "delta_high": r.delta.high}
        metrics += [Metric(f"{k}/{r.name}", v, now, 0) for k, v in values.items() if v is not None]
    client.log_batch(parent_id, metrics=metrics)
    client.set_tag(parent_id, "seeds", ",".join(map(str, comparison.seeds)))
    with tempfile.TemporaryDirectory() as d:
        from .figures import forest_plot
        forest_plot({comparison.ablation: [(r.name, r.delta.mean, r.delta.low, r.delta.high) for r in comparison.rows]},
                    Path(d) / "forest.png", title=f"{comparison.ablation} − {comparison.reference} on {comparison.dataset}")
        (Path(d) / "comparison.md").write_text(table + "\n")
        (Path(d) / "ablation.json").write_text(json.dumps(
            {"ablation": comparison.ablation, "reference": comparison.reference, "dataset": comparison.dataset,
             "seeds": list(comparison.seeds), "runs": comparison.runs}, indent=2) + "\n")
        client.log_artifacts(parent_id, d)


# --------------------------------------------------------------------------------------- driver
def run_ablation(name, **kwargs):
    """One ablation: `run_ablations([name], ...)`. Returns (Comparison, table text)."""
    return run_ablations([name], **kwargs)[0]


def run_ablations(names, *, specs_dir=None, reference=None, dataset="digits", seeds=None, overrides=None,
                  data_dir=None, address=None, tracking_uri=None, experiment=DEFAULT_EXPERIMENT, rerun=False,
                  say=print, gpus_per_run=0.0):
    """Plan every ablation in `names` (each against `reference` when given, else its spec's),
    resume, train what is missing of all of them at once as Ray tasks (a reference run that
    several ablations share is trained once), and compare each. Returns [(Comparison, table)].
    `gpus_per_run`: a GPU share per Ray task (0.25 packs four runs on each GPU); 0, the CPU."""
    if gpus_per_run < 0 or (gpus_per_run > 1 and gpus_per_run != int(gpus_per_run)):
        raise UserError(f"--gpus-per-run must be a share of one GPU (0 to 1) or a whole number, got {gpus_per_run:g}")
    if len(set(names)) != len(names):
        raise UserError(f"an ablation is named twice: {' '.join(names)}")
    from .results import ablation_table

    specs = S.load_specs(specs_dir)
    plans = []
    for name in names:
        named = S.with_reference(specs, name, reference) if reference else specs
        plans.append(S.plan(S.get_spec(named, name), named, dataset, seeds, overrides))
    data_dir = data_dir_for_workers(data_dir)       # Ray tasks run in working directories of their own
    splits_of(plans[0].jobs[0].cfg, data_dir)               # bad data: fail before Ray

    uri = tracking.tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(client, experiment)
    commit = tracking.git_commit()
    parents = [open_parent(client, exp_id, plan, commit) for plan in plans]
    results = []
    try:
        nest, jobs = {}, {}       # a run shared by several ablations nests under the first that needs it
        for plan, parent_id in zip(plans, parents):
            for job in plan.unique_jobs():
                jobs.setdefault(job.key, job)
                nest.setdefault(job.key, (parent_id, {"ablation": plan.spec.name}))
        run_of = {} if rerun else reusable_runs(client, exp_id, jobs.values(), commit)
        todo = [j for j in jobs.values() if j.key not in run_of]
        for plan, parent_id in zip(plans, parents):
            say(f"ablation {plan.spec.name} vs {plan.reference.name} on {dataset}, seeds {list(plan.seeds)}, "
                f"commit {commit[:10]} (parent run {parent_id})")
        say(f"{len(run_of)} finished run(s) reused, {len(todo)} to train (MLflow {uri}, experiment {experiment})")
        if todo:
            run_of.update(train_jobs(client, exp_id, todo, {"git_commit": commit}, data_dir, address, say,
                                     gpus_per_run=gpus_per_run, nest=nest))
        for plan, parent_id in zip(plans, parents):
            for job in plan.jobs:     # shared reference runs too: `tags.role.<ablation>` finds both sides
                client.set_tag(run_of[job.key], f"role.{plan.spec.name}", job.side)
            comparison = compare(client, plan, run_of, parent_id)
            table = ablation_table(comparison)
            log_comparison(client, parent_id, comparison, table)
            client.set_terminated(parent_id, "FINISHED")
            results.append((comparison, table))
    except BaseException as e:
        for parent_id in parents[len(results):]:
            client.set_terminated(parent_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    return results
