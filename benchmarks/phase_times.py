"""Where an adversarial run's time goes, per phase, on this machine: the cost of one batch of each
phase's step, of computing every training image's mask, and of one scoring of the validation and
test suites, extrapolated to the config's full schedule. One thread unless told otherwise.

    OMP_NUM_THREADS=1 python benchmarks/phase_times.py --data-dir ../shared/data
    OMP_NUM_THREADS=1 python benchmarks/phase_times.py --data-dir ../shared/data --layout nchw   # before channels-last

It times the platform's own code (the algorithm's update, begin_phase and scorers), on real data,
from untrained weights: per-batch costs do not depend on what the weights hold.
"""
import argparse
import platform as _platform_check  # noqa: F401  (run from the repo root: the shim must serve it)
import time

import torch

from backdrop.algorithms import place
from backdrop.augment import Augment
from backdrop.data import load_dataset
from backdrop.errors import UserError, one_line_errors
from backdrop.evaluate import test_scorer, validation_scorer
from backdrop.hparams import load_config, make_config
from backdrop.train import build_algorithm, epoch_batches


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/table1/mnist_adversarial.yaml")
    p.add_argument("--data-dir")
    p.add_argument("--batches", type=int, default=60, help="batches timed per phase (default 60)")
    p.add_argument("--mask-images", type=int, default=5000, help="images whose masks are timed (default 5,000)")
    p.add_argument("--layout", choices=["channels_last", "nchw"], default="channels_last",
                   help="the networks' weight layout (nchw: as before algorithms.place)")
    a = p.parse_args()
    cfg = make_config({**load_config(a.config), "seed": 0})
    if cfg["method"] != "adversarial" or cfg["schedule"] != "phased":
        raise UserError(f"{a.config}: phase_times times the phased adversarial method; got method "
                        f"{cfg['method']!r}, schedule {cfg['schedule']!r}")
    if a.batches < 1 or a.mask_images < 1:
        raise UserError("--batches and --mask-images must be at least 1")
    splits = load_dataset(cfg["dataset"], a.data_dir, seed=0)
    alg = build_algorithm(cfg, splits)
    alg = place(alg) if a.layout == "channels_last" else alg.to(memory_format=torch.contiguous_format)
    alg.eval()
    val_s, _ = timed(lambda: validation_scorer(splits)(alg.predict))
    test_s, _ = timed(lambda: test_scorer(splits)(alg.predict))
    x, y, n = splits.train.x, splits.train.y, len(splits.train.y)
    augment = Augment() if cfg["augment"] else None
    gen = torch.Generator().manual_seed(0)

    def per_batch(phase, masks=None):
        alg.train()
        batches = epoch_batches(len(x) if masks is None else len(masks), cfg["batch_size"], 0, 1)[:a.batches]

        def run():
            for idx in batches:
                xb, m = x[idx], (masks[idx] if masks is not None else None)
                if augment is not None:
                    xb, *rest = augment(xb, *([m] if m is not None else []), generator=gen)
                    m = rest[0] if rest else None
                alg.update(phase, {"x": xb, "y": y[idx], **({"m": m} if m is not None else {})})
        return timed(run)[0] / len(batches)

    per_epoch = n // cfg["batch_size"]
    mask_epoch = min(n, cfg["mask_images"] or n) // cfg["batch_size"]
    rows = []
    t = per_batch("classifier")
    rows.append(("classifier step", t, cfg["epochs_f"] * per_epoch * t))
    if cfg["mask"] == "unet" and cfg["epochs_mask"]:
        t = per_batch("mask")
        rows.append(("mask step", t, cfg["epochs_mask"] * mask_epoch * t))
    sub = x[:a.mask_images]
    t_masks, masks = timed(lambda: alg.begin_phase("adversarial", sub))
    rows.append((f"masks ({len(sub)} images timed)", t_masks / len(sub), t_masks / len(sub) * n))
    if masks is None:
        masks = torch.ones_like(sub[:, :1])
    x, y = sub, y[:len(sub)]
    t = per_batch("adversarial", masks)
    rows.append(("game step", t, cfg["epochs_adv"] * per_epoch * t))
    phases = [e for e in (cfg["epochs_f"], cfg["epochs_mask"] if cfg["mask"] == "unet" else 0, cfg["epochs_adv"]) if e]
    scorings = sum(sum(1 for k in range(1, e + 1) if k % cfg["val_every"] == 0 or k == e) for e in phases)
    rows.append((f"validation suite ({scorings} scorings)", val_s, scorings * val_s))
    rows.append(("test suite (once)", test_s, test_s))
    print(f"{a.config}, layout {a.layout}, {torch.get_num_threads()} thread(s), "
          f"{_platform_check.processor() or _platform_check.machine()}")
    print("| part | one unit (s) | whole run (min) |\n|---|---|---|")
    for name, unit, whole in rows:
        print(f"| {name} | {unit:.4f} | {whole / 60:.1f} |")
    print(f"| **total** | | **{sum(w for _, _, w in rows) / 60:.1f}** |")


if __name__ == "__main__":
    with one_line_errors("phase_times"):
        main()
