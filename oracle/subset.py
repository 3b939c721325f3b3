"""Subsets of removed blocks: canonical form, validation and the packed-bit table key."""

import re
from collections.abc import Iterable

import numpy as np

from oracle.errors import InvalidSubset
from oracle.integers import integer, is_integer

Subset = tuple[int, ...]


def canonical_subset(blocks: Iterable[int], n_blocks: int, k: int | None = None) -> Subset:
    """Return the sorted tuple of `blocks`, refusing duplicates, out-of-range or non-integer
    indices, and (when `k` is given) a size other than k."""
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Iterable):
        raise InvalidSubset(f"subset {blocks!r} is not a collection of block indices")
    items = list(blocks)
    for block in items:
        if not is_integer(block):
            raise InvalidSubset(f"block index {block!r} is not an integer")
        if not 0 <= block < n_blocks:
            raise InvalidSubset(f"block index {block} is out of range 0..{n_blocks - 1}")
    subset = tuple(sorted(int(block) for block in items))
    if len(set(subset)) != len(subset):
        duplicates = sorted({b for b in subset if subset.count(b) > 1})
        raise InvalidSubset(f"duplicate block indices {duplicates} in subset {list(items)}")
    if k is not None and len(subset) != k:
        raise InvalidSubset(f"subset {list(subset)} has {len(subset)} blocks, expected k={k}")
    return subset


def parse_subset(text: str, n_blocks: int) -> Subset:
    """Parse '3,7,12', '3 7 12' or '[3, 7, 12]' (or '' / '-' for the empty subset) into a
    canonical subset."""
    text = text.strip()
    inner = (text[1:-1] if text.startswith("[") and text.endswith("]") else text).strip()
    if inner in ("", "-"):
        return ()
    try:
        blocks = [integer(part) for part in re.split(r"[,\s]+", inner) if part]
    except ValueError:
        raise InvalidSubset(f"cannot read subset {text!r}: expected comma-separated block indices") from None
    return canonical_subset(blocks, n_blocks)


def pack_subset(subset: Subset, n_blocks: int) -> bytes:
    """Table key: the subset as a bit mask over n_blocks, packed little-endian into bytes."""
    mask = np.zeros(n_blocks, dtype=bool)
    mask[list(subset)] = True
    return np.packbits(mask, bitorder="little").tobytes()


def packed_width(n_blocks: int) -> int:
    """Bytes per packed mask."""
    return (n_blocks + 7) // 8
