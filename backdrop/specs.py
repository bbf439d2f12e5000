"""Ablation specs: `ablations/<name>.yaml`, each a small named change to the full method.

A spec holds only what differs; everything else comes from its reference and the registry:

    description: no mask generator; composite with a constant blend 0.5 x + 0.5 b
    changes: {mask: none, mask_blend: 0.5}   # hparam overrides, applied to the reference only
    reference: adversarial                   # default; a spec whose reference is itself is a base
    seeds: 2                                 # a count (seeds 0..n-1) or a list
    budget:                                  # per dataset, applied to BOTH sides (held fixed)
      digits: {epochs_f: 5, epochs_mask: 2, epochs_adv: 5}

A base may also start from a run config (`config: configs/table1/mnist_adversarial.yaml`), so an
adopted config is the reference of an ablation without its values being copied into a spec.

Resolution, for one dataset and seed (`plan`):
    reference cfg = registry defaults ← base's config ← budget ← reference's own changes ← {dataset, seed}
    variant cfg   = reference cfg ← changes
where budget = the reference's budget ← the spec's budget ← command-line overrides. So both sides
always share seeds and budget (a budget shortens an adopted config's schedule), and the ablation
differs from its reference only in `changes`. Every key and value is checked against the hparam
registry when the file is loaded.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import shipped
from .dataset_names import DATASETS, check_dataset_name, data_identity
from .errors import UserError
from .hparams import check_value, load_yaml, make_config

DEFAULT_DIR = shipped.folder("ablations")
DEFAULT_REFERENCE = "adversarial"
SPEC_KEYS = ("description", "changes", "reference", "seeds", "budget", "config")
NOT_SETTABLE = ("dataset", "seed")        # chosen per run (--dataset, --seeds), never in a spec
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    description: str
    changes: dict = field(default_factory=dict)
    reference: str = DEFAULT_REFERENCE
    seeds: tuple | None = None             # None: inherit the reference's
    budget: dict = field(default_factory=dict)   # {dataset: {key: value}}
    config: dict = field(default_factory=dict)   # a base's starting settings, read from its `config` file

    @property
    def is_base(self):
        return self.reference == self.name


@dataclass(frozen=True)
class Job:
    """One training run of a plan: which side, which seed, the full config and its identity."""
    side: str                # "reference" or "variant" (a benchmark's runs: "benchmark")
    spec: str                # the spec whose config this is (a benchmark's: the method)
    seed: int
    cfg: dict
    key: str                 # run_key: equal configs on the same files are one run, whichever ablation asks


@dataclass(frozen=True)
class Plan:
    spec: Spec
    reference: Spec
    dataset: str
    seeds: tuple
    jobs: tuple              # variant and reference jobs, one per seed each
    budget: dict             # the settings both sides share

    @property
    def same_as_reference(self):
        return all(j.key == r.key for j, r in zip(self.side("variant"), self.side("reference")))

    def side(self, side):
        return tuple(j for j in self.jobs if j.side == side)

    def unique_jobs(self):
        seen = {}
        for j in self.jobs:
            seen.setdefault(j.key, j)
        return list(seen.values())


def config_key(cfg) -> str:
    """Stable identity of a config (every hparam, dataset and seed included)."""
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def run_key(cfg) -> str:
    """A run's identity for reuse: its config and, for a user's data set, the files it reads, so
    a run on a folder whose images changed (or a studio rebuilt at another size) is not reused."""
    identity = data_identity(cfg["dataset"])
    return config_key({**cfg, "data_files": identity} if identity else cfg)


# ------------------------------------------------------------------------------------ loading
def _overrides(value, where):
    """A mapping of hparam overrides, each validated; dataset and seed are refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping of hyperparameters to values, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if k in NOT_SETTABLE:
            raise UserError(f"{where}: '{k}' cannot be set in a spec; choose it with --{k}"
                            f"{'s' if k == 'seed' else ''} on the command line")
        out[k] = check_value(k, v, where)
    return out


def parse_seeds(value, where):
    """A count n (seeds 0..n-1) or a list of distinct non-negative integers."""
    if isinstance(value, bool):
        raise UserError(f"{where}: 'seeds' must be a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"{where}: 'seeds' must be at least 1, got {value}")
        return tuple(range(value))
    if (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in value) and len(set(value)) == len(value)):
        return tuple(value)
    raise UserError(f"{where}: 'seeds' must be a count or a list of distinct non-negative integers, got {value!r}")


def load_spec(path) -> Spec:
    path = Path(path)
    name = path.stem
    if not _NAME.match(name):
        raise UserError(f"{path}: spec names are lowercase letters, digits and '_'")
    data = load_yaml(path)
    for key in data:
        if key not in SPEC_KEYS:
            raise UserError(f"{path}: unknown key '{key}'; a spec has {', '.join(SPEC_KEYS)}")
    desc = data.get("description")
    if not isinstance(desc, str) or not desc.strip() or "\n" in desc.strip():
        raise UserError(f"{path}: 'description' must be one line of text")
    reference = data.get("reference", DEFAULT_REFERENCE)
    if not isinstance(reference, str) or not _NAME.match(reference):
        raise UserError(f"{path}: 'reference' must name a spec in the same folder, got {reference!r}")
    seeds = parse_seeds(data["seeds"], str(path)) if "seeds" in data else None
    budget = data.get("budget") or {}
    if not isinstance(budget, dict):
        raise UserError(f"{path}: 'budget' must map dataset names to settings, got {type(budget).__name__}")
    for ds in budget:
        if ds not in DATASETS:
            raise UserError(f"{path}: budget: unknown dataset '{ds}'; choose from {', '.join(DATASETS)}")
    return Spec(name, path, desc.strip(), _overrides(data.get("changes"), f"{path}: changes"),
                reference, seeds, {ds: _overrides(v, f"{path}: budget: {ds}") for ds, v in budget.items()},
                _base_config(data.get("config"), name, reference, path))


def _base_config(value, name, reference, path):
    """The settings of a base spec's `config` file, validated; the command line chooses the
    dataset and seeds, so the file's own are left out."""
    if value is None:
        return {}
    if reference != name:
        raise UserError(f"{path}: only a reference (a spec whose reference is itself) may start from a 'config'; "
                        f"this one compares with '{reference}', so put its settings in 'changes'")
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path}: 'config' must be the path of a run config file, got {value!r}")
    where = f"{path}: config {value}"
    data = load_yaml(value)
    return _overrides({k: v for k, v in data.items() if k not in NOT_SETTABLE}, where)


def load_specs(folder=None) -> dict:
    """Every `*.yaml` in the folder, validated, with references checked; {name: Spec}."""
    folder = Path(folder) if folder else DEFAULT_DIR
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder of ablation specs")
    specs = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        spec = load_spec(path)
        if spec.name in specs:
            raise UserError(f"{path}: spec '{spec.name}' is defined twice in {folder}")
        specs[spec.name] = spec
    for spec in specs.values():
        if spec.reference not in specs:
            raise UserError(f"{spec.path}: reference '{spec.reference}' is not a spec in {folder}")
        _chain(spec, specs)
        if spec.seeds is None and _seeds_of(spec, specs) is None:
            raise UserError(f"{spec.path}: no 'seeds' here or in its reference '{spec.reference}'")
    return specs


def get_spec(specs, name) -> Spec:
    if name not in specs:
        raise UserError(f"unknown ablation '{name}'; available: {', '.join(specs)}")
    return specs[name]


def with_reference(specs, name, reference) -> dict:
    """`specs` with `name` compared against `reference` instead of its own (`--reference`): one
    set of ablations against an adopted config without a copy of every spec."""
    spec = get_spec(specs, name)
    if reference not in specs:
        raise UserError(f"--reference {reference}: no such spec; available: {', '.join(specs)}")
    if spec.is_base:
        raise UserError(f"--reference: '{name}' is a reference itself; name the ablations to compare with {reference}")
    out = {**specs, name: replace(spec, reference=reference)}
    _chain(out[name], out)
    return out


# --------------------------------------------------------------------------------- resolution
def _chain(spec, specs):
    """[base, ..., spec]: the reference chain down to a spec that is its own reference."""
    chain = [spec]
    while not chain[-1].is_base:
        nxt = specs[chain[-1].reference]
        if nxt in chain:
            raise UserError(f"{spec.path}: references form a cycle: "
                            f"{' -> '.join(s.name for s in chain + [nxt])}")
        chain.append(nxt)
    return chain[::-1]


def _seeds_of(spec, specs):
    return next((s.seeds for s in reversed(_chain(spec, specs)) if s.seeds is not None), None)


def cfg_for(spec, specs, dataset, seed, budget) -> dict:
    """The full config of `spec` (its changes on top of its reference chain) under `budget`."""
    chain = _chain(spec, specs)
    over = {**chain[0].config, **budget}
    for s in chain:
        over.update(s.changes)
    return make_config({**over, "dataset": dataset, "seed": seed}, where=f"{spec.path}")


def plan(spec, specs, dataset, seeds=None, overrides=None) -> Plan:
    """The jobs that compare `spec` with its reference: same seeds, same budget."""
    check_dataset_name(dataset)
    reference = specs[spec.reference]
    budget = {}                 # a user's own data set (folder:, npz:) has no budget: registry defaults
    for s in _chain(spec, specs):
        budget.update(s.budget.get(dataset, {}))
    budget.update(_overrides(overrides, "command line"))
    seeds = tuple(seeds) if seeds is not None else _seeds_of(spec, specs)
    jobs = []
    for seed in seeds:
        for side, s in (("reference", reference), ("variant", spec)):
            cfg = cfg_for(s, specs, dataset, seed, budget)
            jobs.append(Job(side, s.name, seed, cfg, run_key(cfg)))
    # A user's folder by its absolute path, as its runs have it: the parent run's record then
    # names the same images whatever folder the ablation was started from.
    p = Plan(spec, reference, jobs[0].cfg["dataset"] if jobs else dataset, seeds, tuple(jobs), budget)
    if p.same_as_reference and not spec.is_base:
        raise UserError(f"'{spec.name}' is identical to its reference '{reference.name}' under these settings "
                        f"(an override undoes its changes: {spec.changes})")
    return p
