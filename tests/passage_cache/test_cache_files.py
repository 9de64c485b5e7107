"""A passage cache's files one by one (deformer_bench/passage_cache/cache_files.py): damage found at open (headers,
sizes) or at the first read (checksums), and a .npy whose header differs from what cache.json records says how
(issue 22, finding 13)."""

import shutil

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import load_passage_cache
from tests.passage_cache.conftest import build, windows


@pytest.mark.parametrize("rewrite, message", [
    (np.asfortranarray, r"it is stored in Fortran \(column-major\) order, not the C order a cache writes"),
    (lambda states: states.astype(">f4"), "its float32 is stored big-endian"),
    (lambda states: states.astype(np.float64), "its elements are float64, not float32"),
    (lambda states: states[:1], r"its shape is \(1, 24, 32\), not \(2, 24, 32\)"),
])
def test_a_header_that_differs_says_how(cache, rewrite, message):
    """A Fortran-order file was reported as "damaged: float32 (32, 224, 384), expected float32 (32, 224, 384)"."""
    graph_set, directory, _ = cache
    path = directory / "segment-00000" / "passage_hidden.npy"
    np.save(path, rewrite(np.load(path)))
    with pytest.raises(PassageCacheError, match=f"passage_hidden.npy is damaged: {message}"):
        load_passage_cache(directory, graph_set)


@pytest.mark.parametrize("damage", ["flipped byte", "zeroed in place", "truncated", "missing segment",
                                    "missing file"])
def test_damage_is_refused_at_open_or_at_first_read(tiny_graphs, tmp_path, damage):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache")
    hidden = tmp_path / "cache" / "segment-00000" / "passage_hidden.npy"
    data = bytearray(hidden.read_bytes())
    if damage == "flipped byte":
        data[-5] ^= 0x40
        hidden.write_bytes(bytes(data))
    elif damage == "zeroed in place":  # same size, valid header: only the checksum can tell
        hidden.write_bytes(bytes(data[:128]) + bytes(len(data) - 128))
    elif damage == "truncated":
        hidden.write_bytes(bytes(data[:len(data) // 2]))
    elif damage == "missing segment":
        shutil.rmtree(tmp_path / "cache" / "segment-00000")
    else:
        hidden.unlink()
    with pytest.raises(PassageCacheError, match="damaged|missing"):
        cache = load_passage_cache(tmp_path / "cache", graph_set)
        cache.passage_hidden(cache.rows(ids, mask))


@pytest.mark.parametrize("name, dtype", [("passage_hidden", np.float64), ("passage_hidden", np.float16),
                                         ("passage_attention_mask", np.int32)])
def test_a_cache_array_of_another_dtype_is_damaged(tiny_graphs, tmp_path, name, dtype):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache")
    path = tmp_path / "cache" / "segment-00000" / f"{name}.npy"
    np.save(path, np.load(path).astype(dtype))
    with pytest.raises(PassageCacheError, match=f"{name}.npy is damaged"):
        load_passage_cache(tmp_path / "cache", graph_set)


def test_a_truncated_array_is_found_at_open(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache")
    path = tmp_path / "cache" / "segment-00000" / "passage_hidden.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(PassageCacheError, match="truncated"):
        load_passage_cache(tmp_path / "cache", graph_set)
