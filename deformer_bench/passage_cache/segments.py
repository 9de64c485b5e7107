"""A segment's work, the same whichever engine does it: lower_passage's states of its windows, in the same batches,
encoded as the cache stores them, written whole under a staging name and renamed into place."""

import os
from pathlib import Path

import numpy as np

from ..contracts.hashing import file_sha256
from ..files import staged_directory
from .cache_files import id_dtype, lengths_of_masks, segment_name
from .codecs import encode
from .key_index import keys_array
from .store import window_keys


def compute_states(session, input_ids, attention_mask, batch_size: int, on_batch=None) -> np.ndarray:
    """lower_passage's float32 states [n, Lp, H] of n windows, `batch_size` at a time from the first: the same
    batches whichever engine runs them, so both give the same numbers."""
    parts = []
    for start in range(0, len(input_ids), batch_size):
        parts.append(session.run(None, {"passage_input_ids": input_ids[start:start + batch_size],
                                        "passage_attention_mask": attention_mask[start:start + batch_size]})[0])
        if on_batch is not None:
            on_batch(len(parts[-1]))
    return np.concatenate(parts)


def write_segment(directory: Path, index: int, input_ids, attention_mask, encoded: dict, vocab_size: int) -> dict:
    """One segment written whole under a staging name, renamed, hashed: its record entry."""
    name = segment_name(index)
    keys = keys_array(window_keys(input_ids, attention_mask))  # [n, 16] uint8
    arrays = {"window_key": keys, "passage_input_ids": np.asarray(input_ids).astype(id_dtype(vocab_size))}
    if "passage_length" not in encoded:  # a learned codec's windows keep their mask as a length (store.py)
        arrays["passage_attention_mask"] = np.asarray(attention_mask).astype(np.uint8)
    arrays.update(encoded)
    with staged_directory(directory / name) as staging:
        for stem, array in arrays.items():
            with open(staging / f"{stem}.npy", "wb") as handle:
                np.save(handle, array)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before it is listed: a power loss cannot truncate a listed one
        sha256 = {f"{stem}.npy": file_sha256(staging / f"{stem}.npy") for stem in arrays}
    folder = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename, too
    finally:
        os.close(folder)
    return {"name": name, "windows": int(len(input_ids)), "sha256": sha256}


def encoded_states(states: np.ndarray, attention_mask: np.ndarray, dtype: str, codec=None) -> dict:
    """A segment's arrays of these windows' states: codecs.py's for float32, float16 and int8; a learned codec's
    codes and each window's length in place of its mask."""
    if codec is None:
        return encode(states, dtype)
    lengths = lengths_of_masks(attention_mask)
    return {**{f"passage_{name}": array for name, array in codec.encode(states, lengths).items()},
            "passage_length": lengths}
