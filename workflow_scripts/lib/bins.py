"""Questions and difficulty bins, as every step and the config checks see them: a row's item id, the bin
its difficulty quantile falls in, and the held-out split's order and sizes."""

from __future__ import annotations

import hashlib

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


def hash_key(item_id, seed: int, purpose: str) -> int:
    """A stable 64-bit key of one item. `purpose` keeps unrelated orders (split, in-context draw) apart."""
    digest = hashlib.sha256(f"{purpose}:{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def heldout_count(size: int, fraction: float) -> int:
    if size < 2:
        raise ValueError(f"a bin of {size} item(s) cannot be split into a training and a held-out part")
    return min(max(round(size * fraction), 1), size - 1)


def too_few_rows(sizes: dict, minimum: int) -> str | None:
    """What is wrong with bins (or their training parts) of `sizes` ({bin: rows}) holding fewer than
    `minimum` rows each (config min_train_rows), or None. A training row with a handful of questions
    trains on them silently: a few optimizer steps, a figure cell that looks like any other."""
    small = {k: n for k, n in sizes.items() if n < minimum}
    if not small:
        return None
    listed = ", ".join(f"bin {k}: {n}" for k, n in sorted(small.items(), key=lambda item: int(item[0])))
    return f"training rows with fewer than min_train_rows = {minimum} items ({listed})"


def training_sizes(sizes: dict, fraction: float) -> dict:
    """The training part of each bin of `sizes` ({bin: rows}) once split (0 where a bin cannot be)."""
    return {k: n - heldout_count(n, fraction) if n >= 2 else 0 for k, n in sizes.items()}
