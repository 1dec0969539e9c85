"""Questions and difficulty bins, as every step and the config checks see them: a row's item id and the
bin its difficulty quantile falls in (the held-out split's order and sizes: lib/heldout.py)."""

from __future__ import annotations

import numpy as np

# Columns the study's configs use as ids, in order of preference; rows without one get their row number.
ID_COLUMNS = ("id", "doc_id", "key")


def bin_edges(n_bins: int) -> np.ndarray:
    # k / n written exactly as the definition, so 0.1 lands in bin 1 of 10 and not in bin 0.
    return np.array([k / n_bins for k in range(n_bins + 1)])


def assign_bins(quantiles, n_bins: int, ids=None) -> np.ndarray:
    q = np.asarray(quantiles, dtype=float)
    bad = np.isnan(q) | (q < 0) | (q > 1)
    if bad.any():
        # How many, and which: the fix is in the data, and the ids say where to look.
        names = np.asarray(ids if ids is not None else np.arange(len(q)))[bad][:5]
        examples = ", ".join(f"{name} ({value})" for name, value in zip(names, q[bad][:5]))
        raise ValueError(
            f"quantile values must lie in [0, 1]: {int(bad.sum())} of {len(q)} rows are NaN or outside "
            f"(e.g. {examples}); fix: correct or drop those rows, or set quantile_key to another column"
        )
    bins = np.searchsorted(bin_edges(n_bins), q, side="right") - 1
    return np.minimum(bins, n_bins - 1)
