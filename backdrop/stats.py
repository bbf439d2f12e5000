"""Summaries over seeds: mean ± sd, and the paired difference with a t confidence interval.

Paired by seed because both sides of an ablation share each seed's data split, initial weights
and batch order: the per-seed difference removes that shared noise, so the paired interval is
the honest (and usually much tighter) one. With n seeds it uses Student's t with n − 1 degrees
of freedom, which is wide for small n (n = 2: ±12.7 standard errors) — as it should be.
"""
import math
from dataclasses import dataclass

from scipy.stats import t as student_t


def mean_sd(values):
    """(mean, sample sd); sd is None for fewer than two values."""
    v = list(values)
    if not v:
        return None, None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return m, sd


@dataclass(frozen=True)
class PairedDelta:
    n: int
    mean: float
    low: float | None        # None: the interval needs at least two pairs
    high: float | None

    @property
    def significant(self):
        """The interval excludes 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired_delta(variant, reference, level=0.95) -> PairedDelta:
    """Mean of variant − reference over pairs, with a `level` two-sided t-interval."""
    if len(variant) != len(reference) or not variant:
        raise ValueError(f"need equal, non-zero numbers of pairs, got {len(variant)} and {len(reference)}")
    d = [a - b for a, b in zip(variant, reference)]
    m, sd = mean_sd(d)
    if sd is None:
        return PairedDelta(len(d), m, None, None)
    half = student_t.ppf(0.5 + level / 2, len(d) - 1) * sd / math.sqrt(len(d))
    return PairedDelta(len(d), m, m - half, m + half)
