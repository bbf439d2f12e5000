"""Search-space files for `python -m platform.sweep`: which hyperparameters Optuna searches, over
what, and the fixed part of every trial's config.

    # any key of backdrop/hparams.py, as a distribution ...
    lr_f: {loguniform: [1.0e-4, 1.0e-2]}   # log-uniform float in [low, high]
    mask_tv: {uniform: [0.0, 0.3]}         # uniform float in [low, high]
    noise_dim: {int: [1, 16]}              # integer in [low, high], both included
    tiles: {choice: [1, 2, 4]}             # one of the listed values (any type, lists too)
    # ... or as a fixed value
    epochs_adv: 10
    fixed:                                 # more fixed values (same as writing them above)
      dataset: mnist
    sweep:                                 # defaults of the sweep's own flags
      trials: 40
      workers: 2
      gpus_per_worker: 1
      max_concurrent: 4                    # trials at once (default: as many as the cluster fits)
      seed: 0                              # seed of Optuna's TPE sampler
      grace_period: 16                     # ASHA: epochs before a trial may be stopped

Everything is checked when the file is loaded, against the hyperparameter registry's types,
bounds and choices; any problem is a one-line UserError naming the file and the key.
"""
from dataclasses import dataclass, field

from .errors import UserError
from .hparams import HPARAMS, TILES, check_value, load_yaml, make_config

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
SECTIONS = ("fixed", "sweep")
# Values within the registry's bounds that the networks still reject; caught here so that a sweep
# cannot crash its trials on them.
ALLOWED = {"tiles": TILES}


@dataclass(frozen=True)
class SweepKey:
    """A key of a space file's `sweep:` section, which is also a flag of `platform.sweep`."""
    kind: type
    lowest: float        # the lowest value a file or flag may give
    default: object      # when neither gives one
    help: str            # the flag's help, without its default


# The one table of the sweep's settings: the file's `sweep:` keys, the flags' defaults and help,
# and the defaults of a sweep's saved options.
SWEEP_KEYS = {
    "trials": SweepKey(int, 1, 4, "number of configs to try"),
    "seeds": SweepKey(int, 1, 1, "train each config with this many seeds (the file's seed, +1, ...) and score it by "
                                 "its worst seed's val/worst; no early stopping then"),
    "workers": SweepKey(int, 1, 2, "data-parallel workers per trial: several are a Ray Train DDP run; 1 trains inside "
                                   "the trial's own process"),
    "gpus_per_worker": SweepKey(float, 0.0, 0.0, "GPUs per worker (0: the CPU); with one worker a fraction packs "
                                                 "trials on a GPU (0.25: four at once)"),
    "cpus_per_worker": SweepKey(float, 0.01, 1.0, "CPUs per worker, also its torch threads; with one worker a "
                                                  "fraction packs trials on a CPU"),
    "max_concurrent": SweepKey(int, 0, 0, "trials at once (0: as many as the cluster's CPUs/GPUs fit)"),
    "seed": SweepKey(int, 0, 0, "seed of the TPE sampler"),
    "grace_period": SweepKey(int, 1, 0, "ASHA's grace period in epochs (0: the first epoch of the last phase); "
                                        "a file key only"),
}
# The repeat index Ray Tune's Repeater puts in each trial's config (ray.tune.search.repeater
# .TRIAL_INDEX): in a sweep over seeds, trial k of a config trains with the config's seed + k.
SEED_INDEX = "__trial_index__"


@dataclass(frozen=True)
class Dist:
    kind: str          # one of DISTRIBUTIONS
    args: tuple        # (low, high) or the choices

    def suggest(self, trial, key):
        """Draw the value from an Optuna trial (a list among the choices is drawn as its text)."""
        if self.kind == "choice":
            return decode(self.args, trial.suggest_categorical(key, [encode(v) for v in self.args]))
        low, high = self.args
        if self.kind == "int":
            return trial.suggest_int(key, low, high)
        return trial.suggest_float(key, low, high, log=self.kind == "loguniform")


def encode(value):
    """Optuna's categorical values must be scalars: lists (widths) travel as '8,16,32'."""
    return ",".join(map(str, value)) if isinstance(value, list) else value


def decode(choices, drawn):
    return next(v for v in choices if encode(v) == drawn)


@dataclass
class SearchSpace:
    path: str
    params: dict                               # key → Dist
    fixed: dict                                # validated overrides of the defaults
    sweep: dict = field(default_factory=dict)  # flag defaults from the `sweep:` section

    def suggest(self, trial):
        """Optuna define-by-run space: one suggestion per searched key, named by the key."""
        for key, dist in self.params.items():
            dist.suggest(trial, key)

    def config(self, suggested):
        """The full training config of a trial, from its suggested values (as Tune reports them)."""
        values = {k: decode(self.params[k].args, v) if self.params[k].kind == "choice" else v
                  for k, v in suggested.items() if k in self.params}
        if SEED_INDEX in suggested:
            values["seed"] = self.fixed.get("seed", 0) + int(suggested[SEED_INDEX])
        return make_config({**self.fixed, **values}, where=f"{self.path} (trial)")

    def base_config(self):
        return make_config(self.fixed, where=self.path)

    def with_fixed(self, overrides: dict) -> "SearchSpace":
        """The same space with some fixed values replaced (`platform.sweep --dataset`), validated."""
        return parse({**self.to_dict(), "fixed": {**self.fixed, **overrides}}, self.path)

    def to_dict(self):
        """Round-trips through `parse` (kept with a sweep so that --resume rebuilds it)."""
        return {**{k: {d.kind: list(d.args)} for k, d in self.params.items()}, "fixed": dict(self.fixed),
                "sweep": dict(self.sweep)}


def load_space(path) -> SearchSpace:
    return parse(load_yaml(path), str(path))


def parse(data: dict, where: str) -> SearchSpace:
    fixed_section = data.get("fixed") or {}
    sweep_section = data.get("sweep") or {}
    for name, section in (("fixed", fixed_section), ("sweep", sweep_section)):
        if not isinstance(section, dict):
            raise UserError(f"{where}: '{name}' must be a mapping of keys to values, got {section!r}")
    params, fixed = {}, {}
    for key, spec in data.items():
        if key in SECTIONS:
            continue
        if key not in HPARAMS:
            raise UserError(f"{where}: unknown key '{key}'; use a hyperparameter of backdrop/hparams.py "
                            f"or a section ({', '.join(SECTIONS)})")
        if isinstance(spec, dict):
            params[key] = parse_dist(key, spec, where)
        else:
            fixed[key] = spec
    for key, value in fixed_section.items():
        if key in params or key in fixed:
            raise UserError(f"{where}: '{key}' is given twice (fixed and at the top level)")
        fixed[key] = value
    fixed = {k: check_allowed(k, check_value(k, v, where), where) for k, v in fixed.items()}
    for key in ("dataset", "image_size"):
        if key in params:
            raise UserError(f"{where}: a sweep compares configs on one data set (read once, shared by every "
                            f"trial); fix '{key}' and run one sweep per data set")
    if "val_every" in params or fixed.get("val_every", 1) != 1:
        raise UserError(f"{where}: a sweep scores validation every epoch (its scheduler compares trials "
                        "there); remove 'val_every'")
    if not params:
        raise UserError(f"{where}: nothing to search; give at least one key a distribution "
                        f"({', '.join(DISTRIBUTIONS)})")
    sweep = {k: check_sweep_value(k, v, where) for k, v in sweep_section.items()}
    make_config(fixed, where)
    return SearchSpace(where, params, fixed, sweep)


def parse_dist(key, spec, where) -> Dist:
    at = f"{where}: '{key}'"
    if len(spec) != 1:
        raise UserError(f"{at}: a distribution is one of {', '.join(DISTRIBUTIONS)} with its arguments, "
                        f"e.g. {{loguniform: [1.0e-4, 1.0e-2]}}; got {spec!r}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise UserError(f"{at}: unknown distribution '{kind}'; use one of {', '.join(DISTRIBUTIONS)}")
    hp = HPARAMS[key]
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise UserError(f"{at}: choice needs a non-empty list of values, got {args!r}")
        values = [check_allowed(key, check_value(key, v, where), where) for v in args]
        if len({repr(encode(v)) for v in values}) != len(values):
            raise UserError(f"{at}: choice lists a value twice: {args!r}")
        return Dist(kind, tuple(values))
    if hp.choices or hp.type not in (int, float):
        raise UserError(f"{at}: '{key}' is not numeric; search it with {{choice: [...]}}")
    if key in ALLOWED:
        raise UserError(f"{at}: '{key}' takes only the values {list(ALLOWED[key])}; search it with {{choice: [...]}}")
    if kind in ("uniform", "loguniform") and hp.type is not float:
        raise UserError(f"{at}: '{key}' is an integer; use {{int: [low, high]}} or {{choice: [...]}}")
    if not (isinstance(args, list) and len(args) == 2
            and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
        raise UserError(f"{at}: {kind} needs [low, high] (two numbers), got {args!r}")
    if kind == "int" and not all(isinstance(a, int) for a in args):
        raise UserError(f"{at}: int needs integer bounds, got {args!r}")
    low, high = args
    if low >= high:
        raise UserError(f"{at}: low {low} must be below high {high}")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{at}: loguniform needs low > 0, got {low}")
    checked = check_value(key, low, where), check_value(key, high, where)  # the registry's bounds
    return Dist(kind, (low, high) if kind == "int" else checked)


def check_allowed(key, value, where):
    if key in ALLOWED and value not in ALLOWED[key]:
        raise UserError(f"{where}: '{key}' must be one of {list(ALLOWED[key])}, got {value!r}")
    return value


def check_sweep_value(key, value, where):
    if key not in SWEEP_KEYS:
        raise UserError(f"{where}: unknown key 'sweep.{key}'; known: {', '.join(SWEEP_KEYS)}")
    kind, lowest = SWEEP_KEYS[key].kind, SWEEP_KEYS[key].lowest
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind or value < lowest:
        raise UserError(f"{where}: 'sweep.{key}' must be {'an integer' if kind is int else 'a number'} "
                        f">= {lowest}, got {value!r}")
    return value
