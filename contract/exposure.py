"""Exposure of the items: the definitions the worker's live metrics (stream/live_exposure.py) and the
offline evaluation (serving/offline/exposure.py) share, so both report the same numbers."""
from __future__ import annotations

from typing import Iterable

import numpy as np

# The head: this share of the items, the most popular (by training counts offline, by the worker's
# interaction counts live); every other item is the long tail.
HEAD_FRACTION = 0.2


def gini(values: Iterable[float] | np.ndarray, zeros: int = 0) -> float:
    """Gini coefficient of non-negative ``values`` plus ``zeros`` more zero values, every value
    counted: G = 2 Σ_i i·x_(i) / (n Σ x) - (n + 1) / n over the values sorted ascending, i = 1..n.
    0 for equal values (and for all zeros), (n - 1) / n when one value holds everything."""
    x = np.sort(np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).ravel())
    n = x.size + zeros
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(zeros + 1, n + 1, dtype=np.float64)  # the zeros take ranks 1..zeros
    return float(2.0 * (i * x).sum() / (n * total) - (n + 1.0) / n)
