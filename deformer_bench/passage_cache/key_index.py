"""The cache's index from window key to row: sorted numpy arrays, not a Python dict.

A dict of 16-byte keys costs ~139 bytes a window in memory and ~1.4 s per million windows to build (measured on
this AMD EPYC Zen 2: 1M random keys), so a 21M-window corpus would need ~2.9 GB and ~30 s before its first answer.
Sorted arrays cost 32 bytes a window (the keys in sorted order, 16 bytes; each one's row, 8; an 8-byte prefix to
search, 8; ~56 while they are built) and ~0.25 s per million to sort. Keys are blake2b digests, so their first 8
bytes are spread evenly and almost never shared: a lookup is one binary search on the prefix, then a comparison of
the whole 16 bytes (a shared prefix walks on to the next entry). A one-window lookup costs ~31 us (a dict's: under
1), against ~20 ms of online path; measured beside a training run, so an upper figure.
"""

import numpy as np

KEY_BYTES = 16
KEY_ITEM = np.dtype((np.void, KEY_BYTES))  # one key as one 16-byte item: numpy sorts and searches them bytewise


def keys_array(keys) -> np.ndarray:
    """[N, 16] uint8 of a list of 16-byte keys (window_keys' output) or of such an array."""
    if isinstance(keys, np.ndarray):
        if keys.dtype != np.uint8 or keys.shape[-1:] != (KEY_BYTES,):
            raise ValueError(f"keys are [N, {KEY_BYTES}] uint8, got {keys.shape} {keys.dtype}")
        return np.ascontiguousarray(keys).reshape(-1, KEY_BYTES)
    return np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), KEY_BYTES)


def key_items(keys) -> np.ndarray:
    """[N] KEY_ITEM: each key as one item, as KeySet sorts and searches them."""
    return keys_array(keys).view(KEY_ITEM).reshape(-1)


def key_prefix(keys: np.ndarray) -> np.ndarray:
    """[N] uint64: each key's first 8 bytes, big-endian, so the prefix order is the bytes' order."""
    return keys[:, :8].copy().view(">u8").reshape(-1).astype(np.uint64)


class KeyIndex:
    """Window key -> global row, for keys given in row order (segment after segment). A key stored twice maps to
    its first row, as a dict's setdefault would."""

    def __init__(self, keys: np.ndarray):
        keys = keys_array(keys)
        prefix = key_prefix(keys)
        self.order = np.argsort(prefix, kind="stable")  # [N] rows by prefix; equal prefixes keep row order
        self.sorted_prefix = prefix[self.order]          # [N] uint64, ascending
        self.sorted_keys = keys[self.order]              # [N, 16]

    def __len__(self) -> int:
        return len(self.order)

    def lookup(self, keys) -> np.ndarray:
        """[M] rows of these keys, -1 for a key not stored."""
        keys = keys_array(keys)
        rows = np.full(len(keys), -1, dtype=np.int64)
        if not len(keys) or not len(self):
            return rows
        prefix = key_prefix(keys)
        position = np.searchsorted(self.sorted_prefix, prefix, side="left")  # first entry with this prefix, if any
        pending = np.arange(len(keys))
        while pending.size:
            at = position[pending]
            inside = at < len(self)
            pending, at = pending[inside], at[inside]
            same_prefix = self.sorted_prefix[at] == prefix[pending]
            pending, at = pending[same_prefix], at[same_prefix]
            found = (self.sorted_keys[at] == keys[pending]).all(axis=1)
            rows[pending[found]] = self.order[at[found]]
            pending = pending[~found]  # a shared prefix, another key: try the next entry
            position[pending] += 1
        return rows


class KeySet:
    """Distinct 16-byte keys held as sorted arrays, 16 bytes a key (a Python set of them takes ~98): a build's keys
    new to the cache, ~0.3 GB for a fresh 21M-window build instead of ~2 GB; a passages file's id digests while its
    ids are checked unique (answer.unique_id_records). The arrays are levels, each at least twice the size of the
    next (merged as keys arrive), so adding N keys costs O(N log N) and a lookup one binary search a level (at most
    log2 N levels)."""

    def __init__(self):
        self.levels = []

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def holds_items(self, items: np.ndarray) -> np.ndarray:
        """[N] bool: whether each of these KEY_ITEM keys (key_items) is in the set."""
        held = np.zeros(len(items), dtype=bool)
        for level in self.levels:
            at = np.minimum(np.searchsorted(level, items), len(level) - 1)
            held |= level[at] == items
        return held

    def add_new(self, keys) -> np.ndarray:
        """Positions, ascending, of the keys not yet in the set (the first of a key given twice); they are added."""
        distinct, first = np.unique(key_items(keys), return_index=True)
        new = ~self.holds_items(distinct)
        self.insert(distinct[new])
        return np.sort(first[new])

    def add(self, keys) -> np.ndarray:
        """[N] bool: whether each key was in the set before this call (one given twice in `keys` is False both
        times); all are added."""
        items = key_items(keys)
        held = self.holds_items(items)
        self.insert(np.unique(items[~held]))
        return held

    def insert(self, distinct: np.ndarray):
        """Add sorted KEY_ITEM keys that the set does not hold."""
        if len(distinct):
            self.levels.append(distinct)
            while len(self.levels) > 1 and len(self.levels[-2]) < 2 * len(self.levels[-1]):
                merged = np.concatenate([self.levels[-2], self.levels.pop()])
                merged.sort()  # in place: the merge holds the two levels and one copy, not two
                self.levels[-1] = merged
