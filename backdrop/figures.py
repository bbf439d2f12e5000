"""PNG figures for runs and reports: image grids (composites, masks, backgrounds), the
per-background bar chart and the accuracy-vs-noise curve. Agg backend: no display needed."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def tile(images, ncol=8, gap=2):
    """C×H'×W': the N×C×H×W images in rows of `ncol`, `gap` white pixels apart (white after the
    last image)."""
    n, c, h, w = images.shape
    nrow = (n + ncol - 1) // ncol
    sheet = images.new_ones(c, nrow * (h + gap) - gap, ncol * (w + gap) - gap)
    for k, img in enumerate(images):
        r, q = divmod(k, ncol)
        sheet[:, r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = img
    return sheet


def image_grid(images, path, title="", ncol=8):
    """Save N×C×H×W images in [0, 1] as one grid of at most four rows. The grid is tiled into one
    array and drawn once: a subplot per image costs about a second a figure, paid at the end of
    every run and sweep."""
    images = images.detach().cpu()[: ncol * 4].clamp(0, 1)
    nrow = (len(images) + ncol - 1) // ncol
    top = 0.3 if title else 0.0
    fig = plt.figure(figsize=(ncol * 0.9, nrow * 0.9 + top))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 * nrow * 0.9 / (nrow * 0.9 + top)))
    ax.imshow(tile(images, ncol).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def bar_chart(series: dict, path, title="Accuracy per background"):
    """series: {label: {background: accuracy}} — one group of bars per background."""
    labels = list(series)
    names = [k for k in next(iter(series.values()))]
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 3.2))
    width = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        ax.bar([j + i * width for j in range(len(names))], [100 * series[lab].get(n, float("nan")) for n in names],
               width, label=lab)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=30)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    if len(labels) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def noise_plot(curves: dict, path, title="Accuracy vs salt-and-pepper rate"):
    """curves: {label: {rate: accuracy}}."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for lab, curve in curves.items():
        rates = sorted(curve)
        ax.plot(rates, [100 * curve[r] for r in rates], marker=".", label=lab)
    ax.set_xlabel("noise rate")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def forest_plot(deltas: dict, path, title="Ablation − reference, paired by seed"):
    """deltas: {ablation: [(column, Δ, low, high)]} in accuracy units (low/high None: one seed).
    One row per (ablation, column): Δ in points with its 95 % interval; a filled marker where the
    interval excludes 0, an open one where it does not."""
    rows = [(abl, *row) for abl, rs in deltas.items() for row in rs]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.22 * len(rows)))
    for i, (abl, col, d, lo, hi) in enumerate(rows):
        y = len(rows) - 1 - i
        known = lo is not None and hi is not None
        if known:
            ax.plot([100 * lo, 100 * hi], [y, y], color="tab:blue", lw=1.2)
        real = known and (lo > 0 or hi < 0)
        ax.plot([100 * d], [y], "o", ms=4, color="tab:blue", mfc="tab:blue" if real else "white")
    ax.axvline(0, color="gray", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [f"{abl}: {col}" for abl, col, *_ in reversed(rows)], fontsize=7)
    ax.set_xlabel("Δ accuracy (points), 95 % interval; filled: excludes 0")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@torch.no_grad()
def run_figures(algorithm, x, out_dir):
    """The pictures a method draws of itself on a few images (Algorithm.figures): for the
    adversarial method its composites, masks and generated backgrounds; none for the baselines."""
    return algorithm.figures(x[:32], Path(out_dir))
