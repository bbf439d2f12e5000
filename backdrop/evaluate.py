"""Scoring: accuracy on clean data and on every background of a suite, with the summaries the
paper's table implies (mean and worst over backgrounds, BG-gap = clean − mean), and the
accuracy-vs-noise-rate curve. Model selection uses the *validation* families only."""
import torch

from .backgrounds import NOISE_RATES, TEST_FAMILIES, VAL_FAMILIES, build_suite, noise_suite


@torch.no_grad()
def accuracy(predict, x, y, batch_size=1000, device="cpu"):
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        correct += (predict(xb.to(device)).argmax(1).cpu() == yb).sum().item()
    return correct / max(len(y), 1)


def summarize(accs):
    """Add mean, worst and bg_gap over the background entries (all but 'clean')."""
    bg = [v for k, v in accs.items() if k != "clean"]
    out = dict(accs)
    if bg:
        out["mean"] = sum(bg) / len(bg)
        out["worst"] = min(bg)
        if "clean" in accs:
            out["bg_gap"] = accs["clean"] - out["mean"]
    return out


class SuiteScorer:
    """Builds a split's background suite once and scores any predictor on it."""

    def __init__(self, split, families, device="cpu"):
        self.y, self.device = split.y, device
        self.suite = build_suite(split.x, families=families, clean=True)

    def __call__(self, predict, prefix=""):
        accs = {name: accuracy(predict, x, self.y, device=self.device) for name, x in self.suite.items()}
        return {f"{prefix}{k}": v for k, v in summarize(accs).items()}


def validation_scorer(splits, device="cpu"):
    return SuiteScorer(splits.val, VAL_FAMILIES, device)


def test_scorer(splits, device="cpu"):
    return SuiteScorer(splits.test, TEST_FAMILIES, device)


def noise_curve(predict, split, rates=NOISE_RATES, device="cpu"):
    """{rate: accuracy} with a salt-and-pepper background at each rate."""
    return {r: accuracy(predict, x, split.y, device=device) for r, x in noise_suite(split.x, rates).items()}
