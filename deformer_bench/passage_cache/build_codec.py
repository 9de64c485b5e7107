"""A build's learned codec (dtype pq, rq or binary: quantizers/): the one a build asks for, checked before any
file; trained first, before any segment, on the states of a seeded draw of the plan's distinct windows (computed by
the build's own lower_passage), its codebook written to codebook/ and recorded with its sha256 in cache.json
(schema.py, format 5); a resume or an append encodes with the cache's own codebook, never a new one."""

import os
from pathlib import Path

import numpy as np

from ..contracts.errors import PassageCacheError
from ..contracts.hashing import file_sha256
from ..files import staged_directory
from .cache_files import codebook_path, load_codec
from .engines import check_encodes_learned_codec
from .quantizers import CodecError, describe_codec, make_codec, require_faiss
from .schema import CODEBOOK_FOLDER, LEARNED_DTYPES
from .segments import compute_states
from .store import RECORD_FILE, window_keys


def requested_codec(dtype, settings, identity: dict, engine, metric=None, out_dir: Path = None):
    """The learned codec a build asks for (untrained), or None; faiss, the settings, the metric (the codec's own
    check: quantizers.Codec.check_metric) and the engine checked before any file is touched. No settings and a
    cache already in `out_dir`: None too, the cache's own codec is used (whatever the defaults would say)."""
    if dtype not in LEARNED_DTYPES:
        if settings or metric is not None:
            given = f"codec settings ({', '.join(settings)}) belong" if settings else "a codec metric belongs"
            stored = dtype or "the cache's own"
            raise PassageCacheError(f"{given} to a learned codec, and the dtype is {stored}",
                                    "give --dtype pq, rq or binary, or drop them")
        return None
    require_faiss()
    check_encodes_learned_codec(engine, dtype)
    if not settings and out_dir is not None and (Path(out_dir) / RECORD_FILE).is_file():
        if metric is not None:
            raise PassageCacheError(f"a codec metric is read only to learn a codebook, and passage cache {out_dir} "
                                    "has its own", "drop the metric (or give the codec settings it was built with)")
        return None
    codec = make_codec(dtype, identity["hidden_size"], **(settings or {}))
    codec.check_metric(metric)
    return codec


def cache_codec(directory: Path, record: dict, engine):
    """The codec of the cache a build goes on with, its codebook checked (None: the cache stores no learned
    codec); faiss and the engine checked, as encoding its new windows needs them."""
    codec = load_codec(directory, record)
    if codec is not None:
        require_faiss()
        check_encodes_learned_codec(engine, codec.name)
    return codec


def check_same_codec(record: dict, directory: Path, codec) -> None:
    """An append or a resume encodes with the cache's codebook: a build asking for another codec's settings is
    refused (its codes would decode with the wrong codebook)."""
    if codec is None or record["codec"] is None:
        return
    theirs = record["codec"]
    if theirs["settings"] != codec.settings:
        raise PassageCacheError(f"passage cache {directory} stores {describe_codec(theirs['name'], theirs['settings'])}"
                                f", not {describe_codec(codec.name, codec.settings)}: its windows are encoded with "
                                "its own codebook, and an append must use it", "give the cache's codec settings (or "
                                "none: the cache's are used), or build into a new directory")


def train_codec(graph_set, shards, sample_keys: frozenset, out_dir: Path, codec, session_factory, batch_size: int,
                seed: int, metric=None) -> dict:
    """Learn `codec`'s codebook on the states of the windows of `sample_keys` (the plan's draw) and write it to
    out_dir/codebook/ (whole, then renamed); its record entry (schema.CODEC)."""
    session = session_factory(graph_set.path("lower_passage"))
    taken, tokens = set(), []
    for input_ids, attention_mask in shards:
        input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
        picked = []
        for position, key in enumerate(window_keys(input_ids, attention_mask)):
            if key in sample_keys and key not in taken:
                taken.add(key)
                picked.append(position)
        if picked:
            states = compute_states(session, input_ids[picked], attention_mask[picked], batch_size)
            tokens.append(states[attention_mask[picked].astype(bool)])  # padding states reach no answer
    sample = np.concatenate(tokens) if tokens else np.zeros((0, codec.hidden_size), np.float32)
    if len(sample) == 0:
        raise CodecError(f"codec {codec.describe()} has no passage states to learn from", "give passages")
    codec.train(sample, metric, seed=seed)
    with staged_directory(out_dir / CODEBOOK_FOLDER, replace=True) as staging:
        for name, array in codec.codebook.items():
            with open(staging / f"{name}.npy", "wb") as handle:
                np.save(handle, np.ascontiguousarray(array))
                handle.flush()
                os.fsync(handle.fileno())
    sha256 = {name: file_sha256(codebook_path(out_dir, name)) for name in codec.codebook}
    return {"name": codec.name, "settings": codec.settings, "codebook": sha256,
            "sample": {"windows": len(taken), "tokens": int(len(sample)), "seed": seed}}
