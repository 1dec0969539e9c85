"""The held-out split's order and sizes, as the split step, the in-context draw and the config checks
see them: a stable keyed hash of each item id, and how many items of a bin are held out."""

from __future__ import annotations

import hashlib


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
