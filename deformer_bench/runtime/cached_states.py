"""Reading passage states out of a memory-mapped passage cache: how a server gets them, and what the benchmark's
`online_served` path times (numpy only).

A cache's `passage_hidden.npy` [U, Lp, H] is opened with mmap_mode="r"; a query's windows are gathered row by row
into one contiguous array [B, Lp, H] (onnxruntime needs contiguous memory, and a mapped file must not be handed
to a session that could outlive it).
"""

import numpy as np


def gather_rows(hidden: np.ndarray, rows) -> np.ndarray:
    """[B, Lp, H] in memory: the rows [B] of a (memory-mapped) [U, Lp, H] array, in the order asked."""
    return np.ascontiguousarray(hidden[np.asarray(rows, dtype=np.int64)])


class ServedPassageStates:
    """One batch's passage states [B, Lp, H] written into a memory-mapped cache file of many windows, then read
    back a batch per call from rows spread over the whole file, as a server reads its cache.

    The file holds whole copies of the batch: row r is window r % B, so every gathered batch equals the states
    it was made from (the outputs stay comparable with `online`). It is at least `min_bytes` large so that
    successive calls read memory, not a CPU cache; the rows of each call are a fixed pseudo-random choice of
    blocks, so consecutive calls do not read neighbouring rows. The file was just written: its pages are in the
    OS page cache (a cache that fits in memory; reading from disk is not what this times)."""

    def __init__(self, path, passage_hidden: np.ndarray, min_bytes: int, seed: int = 0):
        batch = passage_hidden.shape[0]
        blocks = max(1, -(-int(min_bytes) // max(1, passage_hidden.nbytes)))  # whole batches, >= min_bytes
        mapped = np.lib.format.open_memmap(str(path), mode="w+", dtype=passage_hidden.dtype,
                                           shape=(blocks * batch, *passage_hidden.shape[1:]))
        for block in range(blocks):
            mapped[block * batch:(block + 1) * batch] = passage_hidden
        mapped.flush()
        del mapped
        self.hidden = np.load(str(path), mmap_mode="r")
        self.batch, self.blocks = batch, blocks
        self.block_order = np.random.default_rng(seed).permutation(blocks)
        self.calls = 0

    @property
    def file_bytes(self) -> int:
        return int(self.hidden.nbytes)

    def next_rows(self) -> np.ndarray:
        """[B] rows of the next call: window b of the batch from block block_order[call % blocks]."""
        block = self.block_order[self.calls % self.blocks]
        self.calls += 1
        return block * self.batch + np.arange(self.batch)

    def next_states(self) -> np.ndarray:
        return gather_rows(self.hidden, self.next_rows())
