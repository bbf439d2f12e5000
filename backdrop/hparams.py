"""The one hyperparameter registry: every knob of a run, its default, its type and its bounds.

Command-line flags, YAML configs, search spaces and ablation specs all name these keys and are
validated against this table, so a typo is a one-line error instead of a silently ignored value.
"""
from dataclasses import dataclass

import yaml

from .errors import UserError


@dataclass(frozen=True)
class HParam:
    default: object
    help: str
    choices: tuple = ()
    low: float | None = None      # inclusive bounds for numbers
    high: float | None = None

    @property
    def type(self):
        return type(self.default)


HPARAMS = {
    # what to train
    "method": HParam("adversarial", "registered method", ("vanilla", "attention", "adversarial")),
    "dataset": HParam("digits", "digits, mnist, fashion-mnist, or your own images: folder:PATH (a sub-folder "
                                "of images per class) or npz:PATH (arrays x, y)"),
    "image_size": HParam(0, "side your own images (folder:, npz:) are resized to: 32, 64 or 128 (0 = the largest "
                            "that no image is smaller than); the built-in data sets are 32 px", low=0, high=128),
    "seed": HParam(0, "seed for weights, batches, noise and augmentation", low=0),
    "limit": HParam(0, "keep only the first N images of each split (0 = all)", low=0),
    # schedule: phase 1 trains f; phase 2 trains f_m; phase 3 trains f against f_b
    "schedule": HParam("phased", "phased (1: f, 2: f_m, 3: f vs f_b) or end_to_end (1: f, then all three)",
                       ("phased", "end_to_end")),
    "epochs_f": HParam(10, "phase 1 epochs (the whole run for vanilla and attention)", low=0),
    "epochs_mask": HParam(5, "phase 2 epochs (mask generator)", low=0),
    "epochs_adv": HParam(10, "phase 3 epochs (adversarial; end-to-end epochs for end_to_end)", low=0),
    "batch_size": HParam(64, "images per step per worker (paper: 8; larger is far faster on a CPU)", low=1, high=4096),
    "val_every": HParam(1, "score the validation suite every N epochs of a phase, and always at a phase's "
                           "last epoch (1 = every epoch, as a sweep needs; it never changes the training)", low=1),
    "augment": HParam(True, "rotation, shift, shear and brightness augmentation (same geometry for masks)"),
    # optimisers (Adam)
    "lr_f": HParam(1e-3, "classifier learning rate", low=1e-7, high=1.0),
    "lr_m": HParam(1e-3, "mask U-Net learning rate (paper: 1e-5 over 100 epochs)", low=1e-7, high=1.0),
    "lr_b": HParam(1e-5, "background generator learning rate (the paper's; a faster adversary overwhelms f)", low=1e-7, high=1.0),
    # the game
    "ascent_per_descent": HParam(1.0, "ascent steps of f_b per descent step of f (and f_m); "
                                      "exactly 1 shares one forward/backward via gradient reversal",
                                 low=0.0, high=16.0),
    "background": HParam("adv", "phase-3 backgrounds", ("adv", "black", "noise", "real", "fixed", "randconv")),
    "fixed_bank_size": HParam(256, "backgrounds in the fixed bank (background=fixed)", low=1),
    "black_fraction": HParam(0.0, "fraction of each phase-3 batch composited on the plain studio backdrop (keyed; "
                                  "black, x*m alone, on a black one): a generator never paints it", low=0.0, high=1.0),
    "real_fraction": HParam(0.0, "fraction of each phase-3 batch composited on crops of real photographs "
                                 "(after the black share; the rest is the generator's)", low=0.0, high=1.0),
    "randconv_fraction": HParam(0.0, "fraction of each phase-3 batch composited on random-convolution textures "
                                     "(fine two-colour structure at 1-4 px; after the black and real shares)",
                                low=0.0, high=1.0),
    "replay_fraction": HParam(0.0, "fraction of each phase-3 batch composited on past generated backgrounds, "
                                   "replayed from a buffer (after the black, real and randconv shares): f keeps seeing "
                                   "patterns the generator has moved away from", low=0.0, high=1.0),
    "replay_size": HParam(2048, "backgrounds the replay buffer holds; each game step stores one of its "
                                "newest over a random old one", low=1),
    "diversity": HParam(0.0, "weight of a reward for f_b when different noise gives different backgrounds "
                             "(mean |b1-b2| / mean |z1-z2| over 16 pairs; DSGAN): against a generator "
                             "that draws the same few patterns for every z", low=0.0, high=10.0),
    "symmetric_backgrounds": HParam(False, "turn or flip each generated background by a random one of the "
                                           "square's 8 symmetries (the adversary's patterns in every orientation)"),
    "colour_backgrounds": HParam(False, "draw each generated background's pattern in random colours: every channel "
                                        "mapped onto a random range of its own, drawn per image (the adversary's "
                                        "patterns in every palette, as the world suite draws its families)"),
    "colour_extremes": HParam(0.0, "share of recoloured backgrounds (colour_backgrounds, randconv) drawn in opposed "
                                   "colours (per channel one end near 0 or 1, the other its opposite) instead of "
                                   "uniform ones: high-contrast patterns, which uniform colours rarely give",
                              low=0.0, high=1.0),
    "f_average": HParam(0.0, "decay of an exponential moving average of f's weights over the game "
                             "(0 = off); predict uses the average once the game has begun", low=0.0, high=0.9999),
    "white_penalty": HParam(True, "penalise relu(mean(b) - 0.5) so f_b cannot win by painting white"),
    "noise_dim": HParam(1, "channels of each tile's 4x4 noise map (1 = the paper's 16 values)", low=1, high=64),
    "tiles": HParam(2, "tiles per side of a generated background", low=1, high=8),
    "generator_scales": HParam(1, "generators in f_b, the k-th drawing tiles / 2^k tiles per side (coarser "
                                  "tiles draw larger coherent shapes); each draws an equal share of every batch",
                               low=1, high=4),
    "gen_width": HParam(16, "conv width of the background generator (32 costs more than the classifier)", low=1),
    # the mask
    "mask": HParam("unet", "mask source: the U-Net f_m, the heuristic (the keyed object: x > 0 on a black backdrop), "
                           "or none (a constant blend)",
                   ("unet", "heuristic", "none")),
    "mask_blend": HParam(0.5, "constant mask value when mask=none: x~ = a*x + (1-a)*b", low=0.0, high=1.0),
    "mask_area": HParam(0.2, "fraction of pixels the mask may cover for free", low=0.0, high=1.0),
    "mask_area_loss": HParam("linear", "area penalty relu(mean(m) - area), or its square", ("linear", "squared")),
    "mask_images": HParam(0, "train the mask U-Net on the first N training images only (0 = all)", low=0),
    "mask_fill": HParam("backdrop", "what the mask phase shows f where the mask is off: the image's keyed studio "
                                    "backdrop (black on a black one, so x*m there) or black",
                        ("backdrop", "black")),
    "mask_tv": HParam(0.1, "weight of the mask's total variation", low=0.0),
    "binarize": HParam("otsu", "mask binarisation before compositing", ("otsu", "0.5", "quantile", "none")),
    # networks
    "widths": HParam([32, 64, 128], "conv widths of the classifier and U-Net blocks"),
    "dense": HParam(128, "classifier dense layer width", low=1),
    "tau": HParam(0.7, "attention (AG-CNN) heatmap threshold", low=0.0, high=1.0),
}


# Values of 'tiles' within its bounds that the generator accepts: a 32-px background splits into
# tiles of 4·2^k px (the generator doubles a 4×4 noise map).
TILES = (1, 2, 4, 8)


def defaults() -> dict:
    return {k: (list(p.default) if isinstance(p.default, list) else p.default) for k, p in HPARAMS.items()}


def check_value(key, value, where="config"):
    """Validate one value against the registry; returns it coerced (int → float where needed)."""
    if key not in HPARAMS:
        raise UserError(f"{where}: unknown key '{key}'; known keys: {', '.join(HPARAMS)}")
    p = HPARAMS[key]
    if p.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if p.type is list:
        if not (isinstance(value, list) and value and all(isinstance(v, int) and v > 0 for v in value)):
            raise UserError(f"{where}: '{key}' must be a list of positive integers, got {value!r}")
        return value
    if p.choices:
        value = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if value not in p.choices:
            raise UserError(f"{where}: '{key}' must be one of {', '.join(p.choices)}; got {value!r}")
        return value
    if type(value) is not p.type:
        raise UserError(f"{where}: '{key}' must be {p.type.__name__}, got {value!r}")
    if p.low is not None and value < p.low or p.high is not None and value > p.high:
        raise UserError(f"{where}: '{key}' = {value} is outside [{p.low}, {p.high}]")
    return value


def make_config(overrides: dict | None = None, where="config") -> dict:
    """Defaults updated with validated overrides."""
    from .dataset_names import absolute_dataset, check_image_size
    cfg = defaults()
    for k, v in (overrides or {}).items():
        cfg[k] = check_value(k, v, where)
    try:
        # A user's folder by its absolute path: the same images whatever the working directory,
        # so a config's identity (ablation reuse, sweep resume) names the data, not a relative path.
        cfg["dataset"] = absolute_dataset(cfg["dataset"])
        check_image_size(cfg["image_size"])
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    if cfg["tiles"] not in TILES:
        raise UserError(f"{where}: 'tiles' must be one of {', '.join(map(str, TILES))}, got {cfg['tiles']}")
    if cfg["tiles"] % 2 ** (cfg["generator_scales"] - 1):
        raise UserError(f"{where}: 'generator_scales' = {cfg['generator_scales']} halves 'tiles' = {cfg['tiles']} "
                        f"{cfg['generator_scales'] - 1} times, below one tile; lower it or raise 'tiles'")
    for key, off in (("replay_fraction", 0), ("diversity", 0), ("generator_scales", 1)):
        if cfg[key] != off and cfg["background"] != "adv":
            raise UserError(f"{where}: '{key}' acts on the adversarial generator, but background is "
                            f"{cfg['background']!r}; set background: adv or drop '{key}'")
    recoloured = ((cfg["colour_backgrounds"] and cfg["background"] == "adv") or cfg["randconv_fraction"]
                  or cfg["background"] == "randconv")
    if cfg["colour_extremes"] and not recoloured:
        raise UserError(f"{where}: 'colour_extremes' = {cfg['colour_extremes']:g} changes how backgrounds are "
                        "recoloured, but nothing is: set colour_backgrounds: true or a randconv share, or drop it")
    share_keys = ("black_fraction", "real_fraction", "randconv_fraction", "replay_fraction")
    shares = sum(cfg[k] for k in share_keys)
    if shares > 1:
        raise UserError(f"{where}: {' + '.join(repr(k) for k in share_keys)} = {shares:g} is more "
                        "than the whole batch (1)")
    return cfg


def load_yaml(path) -> dict:
    """Read a YAML mapping; a missing file or a syntax error is a one-line UserError. A shipped
    file (`search_spaces/quick.yaml`, `configs/table1/…`) is found from any directory."""
    from .shipped import find
    path = find(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: invalid YAML{at}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def load_config(path) -> dict:
    """A YAML file of hyperparameter overrides, validated against the registry."""
    return make_config(load_yaml(path), where=str(path))
