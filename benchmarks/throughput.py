"""Training throughput (images/s) of the vanilla step and of the adversarial phase-3 step,
measured in the same process on the same data, with paper-size networks.

    python benchmarks/throughput.py --data-dir ../shared/data          # MNIST
    python benchmarks/throughput.py                                     # offline digits

Each step is what the training loop does per batch: index the batch, augment it (image and mask
with one geometry), update. Phase 3 reuses masks computed once by the frozen U-Net at the start
of the phase (that one-off cost is printed separately); at ascent:descent = 1 one forward and one
backward serve both players (gradient reversal). Target: adversarial ≤ 1.6× the vanilla step.
"""
import argparse
import time

import torch

from backdrop.augment import Augment
from backdrop.data import load_dataset
from backdrop.hparams import make_config
from backdrop.train import build_algorithm


def steps_per_s(alg, phase, x, y, m, batch_size, seconds, augment):
    gen = torch.Generator().manual_seed(0)
    alg.train()
    n, done, t0 = len(x), 0, None
    while True:
        idx = torch.randint(n, (batch_size,), generator=gen)
        xb, yb = x[idx], y[idx]
        mb = m[idx] if m is not None else None
        if augment:
            xb, *rest = augment(xb, *([mb] if mb is not None else []), generator=gen)
            mb = rest[0] if rest else None
        batch = {"x": xb, "y": yb, **({"m": mb} if mb is not None else {})}
        alg.update(phase, batch)
        if t0 is None:                        # the first step warms up allocators and kernels
            t0 = time.perf_counter()
            continue
        done += 1
        if time.perf_counter() - t0 > seconds:
            return done * batch_size / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=None, help="default: mnist when --data-dir is given, else digits")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20.0, help="timing window per step kind")
    p.add_argument("--repeats", type=int, default=2, help="alternate the two measurements this many times")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dataset = a.dataset or ("mnist" if a.data_dir else "digits")
    splits = load_dataset(dataset, a.data_dir)
    x, y = splits.train.x[:8192], splits.train.y[:8192]

    vanilla = build_algorithm(make_config({"method": "vanilla", "dataset": dataset}), splits)
    adv = build_algorithm(make_config({"method": "adversarial", "dataset": dataset}), splits)
    t0 = time.perf_counter()
    masks = adv.begin_phase("adversarial", x)
    mask_s = time.perf_counter() - t0
    augment = Augment()

    rates = {"vanilla": [], "adversarial": []}
    for _ in range(a.repeats):               # interleaved, so drifts in machine load hit both
        rates["vanilla"].append(steps_per_s(vanilla, "classifier", x, y, None, a.batch_size, a.seconds, augment))
        rates["adversarial"].append(steps_per_s(adv, "adversarial", x, y, masks, a.batch_size, a.seconds, augment))
    best = {k: max(v) for k, v in rates.items()}
    print(f"dataset {dataset}, batch {a.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"vanilla step:            {best['vanilla']:8.0f} images/s")
    print(f"adversarial phase-3 step:{best['adversarial']:8.0f} images/s")
    print(f"cost ratio adversarial/vanilla: {best['vanilla'] / best['adversarial']:.2f}x (target <= 1.6x)")
    print(f"one-off mask precompute (frozen U-Net): {len(x) / mask_s:.0f} images/s "
          f"({mask_s:.1f} s for {len(x)} images)")


if __name__ == "__main__":
    main()
