"""Reading passage states out of a memory-mapped passage cache: how a server gets them, and what the benchmark's
`online_served` path times (numpy only).

A cache's `passage_hidden.npy` [U, Lp, H] is opened with mmap_mode="r"; a query's windows are gathered row by row
into one contiguous array [B, Lp, H] (onnxruntime needs contiguous memory, and a mapped file must not be handed
to a session that could outlive it). A cache of a learned codec stores codes in place of the states: they are
gathered the same way and decoded (codec_decode.py).
"""

import os

import numpy as np

from .codec_decode import coefficient_windows, decode_windows


def gather_rows(hidden: np.ndarray, rows) -> np.ndarray:
    """[B, Lp, H] in memory: the rows [B] of a (memory-mapped) [U, Lp, H] array, in the order asked."""
    return np.ascontiguousarray(hidden[np.asarray(rows, dtype=np.int64)])


class ServedBatches:
    """One batch's arrays {name: [B, ...]}, each written into a memory-mapped file (`files`: {name: path}) of many
    windows, then read back a batch per call from rows spread over the whole file, as a server reads its cache.

    A file holds whole copies of the batch: row r is window r % B, so every gathered batch equals the one it was
    made from. The files are at least `min_bytes` large together, so that successive calls read memory, not a
    CPU cache; the rows of each call are a fixed pseudo-random choice of blocks, so consecutive calls do not read
    neighbouring rows. The files were just written: their pages are in the OS page cache (a cache that fits in
    memory; reading from disk is not what this times)."""

    def __init__(self, files: dict, arrays: dict, min_bytes: int, seed: int = 0):
        batch = len(next(iter(arrays.values())))
        batch_bytes = sum(array.nbytes for array in arrays.values())
        blocks = max(1, -(-int(min_bytes) // max(1, batch_bytes)))  # whole batches, >= min_bytes
        self.paths, self.mapped = [str(path) for path in files.values()], {}
        for name, array in arrays.items():
            mapped = np.lib.format.open_memmap(str(files[name]), mode="w+", dtype=array.dtype,
                                               shape=(blocks * batch, *array.shape[1:]))
            for block in range(blocks):
                mapped[block * batch:(block + 1) * batch] = array
            mapped.flush()
            del mapped
            self.mapped[name] = np.load(str(files[name]), mmap_mode="r")
        self.batch, self.blocks = batch, blocks
        self.block_order = np.random.default_rng(seed).permutation(blocks)
        self.calls = 0

    @property
    def file_bytes(self) -> int:
        return int(sum(array.nbytes for array in self.mapped.values()))

    def next_rows(self) -> np.ndarray:
        """[B] rows of the next call: window b of the batch from block block_order[call % blocks]."""
        block = self.block_order[self.calls % self.blocks]
        self.calls += 1
        return block * self.batch + np.arange(self.batch)

    def next_arrays(self) -> dict:
        rows = self.next_rows()
        return {name: gather_rows(mapped, rows) for name, mapped in self.mapped.items()}

    def remove(self) -> None:
        """Close the maps and remove the files (the next timing process writes its own)."""
        self.mapped.clear()
        for path in self.paths:
            os.remove(path)


class ServedPassageStates(ServedBatches):
    """One batch's float32 passage states [B, Lp, H] served from a memory-mapped cache file (ServedBatches): every
    gathered batch equals the states it was made from, so the outputs stay comparable with `online`'s."""

    def __init__(self, path, passage_hidden: np.ndarray, min_bytes: int, seed: int = 0):
        super().__init__({"passage_hidden": path}, {"passage_hidden": passage_hidden}, min_bytes, seed)

    @property
    def hidden(self) -> np.ndarray:
        return self.mapped["passage_hidden"]

    def next_states(self) -> np.ndarray:
        return gather_rows(self.hidden, self.next_rows())


class ServedPassageCodes(ServedBatches):
    """One batch's windows stored in a learned codec ({array: [B, Lp, ...]}, as a pq, rq or binary passage cache
    stores them) served from memory-mapped files (ServedBatches) and decoded in every call (codec_decode: every
    position, as the full-length inputs take them), the states [B, Lp, H] handed on as a served cache's; with
    `upper` (pq with a transform), only the look-ups: the coefficients [B, Lp, K] that `upper` takes."""

    def __init__(self, files: dict, codes: dict, decoder, min_bytes: int, seed: int = 0, upper=None):
        super().__init__(files, codes, min_bytes, seed)
        self.decoder = decoder
        # an onnxruntime session of upper with pq's product inside (exporters/codec_upper.py), or None: then
        # next_states gives the coefficients [B, Lp, K] (the look-ups alone) that it takes in place of the states
        self.upper = upper

    def next_states(self) -> np.ndarray:
        if self.upper is not None:
            return coefficient_windows(self.decoder, self.next_arrays())
        return decode_windows(self.decoder, self.next_arrays())
