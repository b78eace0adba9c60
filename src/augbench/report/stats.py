"""The numbers behind every table: intervals, the paired test over seeds, Holm's correction.

Pure numpy/scipy; nothing here knows about runs or files.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

ALPHA = 0.05  # significance level, after Holm's correction across a row

# The two interval forms; the study's one is not a CI of the mean, so say so wherever shown.
CI_LABELS = {
    "t": "95% CI of the mean, t(0.975, n−1)·s/√n",
    "normal": "1.96·s, the study's '95% CI' convention (s = sample std; not a CI of the mean)",
}
CI_TEX = {
    "t": r"95\% CI of the mean, $t_{0.975,\,n-1}\,s/\sqrt{n}$",
    "normal": r"$1.96\,s$, the study's `95\% CI' convention ($s$ = sample std; not a CI of the mean)",
}


@lru_cache(maxsize=None)
def t_value(n: int) -> float:
    """Two-sided 95% Student-t quantile for n samples, t(0.975, n-1)."""
    return float(stats.t.ppf(0.975, n - 1))


def check_ci(ci: str) -> None:
    if ci not in CI_LABELS:
        raise ValueError(f"ci must be one of {sorted(CI_LABELS)}, got {ci!r}")


def mean_ci(values, ci: str = "t") -> tuple[float, float, int]:
    """(mean, half-width, n). Half-width is NaN for n < 2, mean is NaN for n = 0.

    ci="t": t(0.975, n-1)·s/√n; ci="normal": the study's 1.96·s (s with ddof=1)."""
    check_ci(ci)
    x = np.asarray(list(values), dtype=float)
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, 1
    s = float(x.std(ddof=1))
    return mean, (t_value(n) * s / math.sqrt(n) if ci == "t" else 1.96 * s), n


def seed_key(s) -> tuple:
    """Integer seeds in numeric order, anything else after them as text."""
    return (0, s, "") if isinstance(s, int) else (1, 0, str(s))


def paired_test(a: dict, b: dict) -> dict:
    """Two-sided paired t-test of a − b over the seeds both have (a, b: {seed: value}).

    The same seed shares the initialisation and the train/validation split, so runs pair by seed.
    Returns {n, seeds, diff (mean of a − b), t, p, note}; t and p are None, and note says why,
    when there is no test: fewer than 2 shared seeds, or differences without any spread."""
    seeds = sorted((set(a) & set(b)) - {None}, key=seed_key)
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    out = {"n": len(seeds), "seeds": seeds, "diff": float(d.mean()) if d.size else None,
           "t": None, "p": None, "note": ""}
    if d.size < 2:
        out["note"] = (f"only {d.size} shared seed{'' if d.size == 1 else 's'}; a paired test needs 2"
                       if d.size else "no shared seed")
    elif float(d.std(ddof=1)) <= 1e-9 * max(1.0, abs(out["diff"])):
        # constant differences: t is ±inf or 0/0, decided by rounding noise, not by the data
        out["note"] = "every paired difference is the same, so the t-test is undefined"
    else:
        res = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        out["t"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def holm(pvalues) -> list:
    """Holm's step-down adjustment; None entries (no test) stay None and do not count in m."""
    tested = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m, running = len(tested), 0.0
    adjusted = [None] * len(pvalues)
    for rank, i in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def band(mean, half_width, lo: float = 0.0, hi: float = 100.0):
    """(lower, upper, defined) of an interval band for plotting, clipped to [lo, hi]: an accuracy
    band never leaves the scale. Where the half-width is NaN (n < 2) the band is undefined."""
    mean, hw = np.asarray(mean, dtype=float), np.asarray(half_width, dtype=float)
    ok = np.isfinite(hw)
    hw = np.where(ok, hw, 0.0)
    return np.clip(mean - hw, lo, hi), np.clip(mean + hw, lo, hi), ok
