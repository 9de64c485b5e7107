"""A .npy file whose header differs from what cache.json records says how it differs (issue 22, finding 13)."""

import numpy as np
import pytest

from deformer_bench.errors import PassageCacheError
from deformer_bench.passage_cache import build_passage_cache, load_passage_cache
from deformer_bench.serving import evaluation_session
from exporters.manifest import load_graph_set


@pytest.fixture
def cache(tiny_graphs, tmp_path):
    """A complete float32 cache of 4 windows in two segments of 2."""
    graph_set = load_graph_set(tiny_graphs)
    ids = np.random.default_rng(0).integers(1, 120, size=(4, 24))
    build_passage_cache(graph_set, ids, np.ones_like(ids), tmp_path / "cache", evaluation_session, progress=False,
                        segment_windows=2)
    return graph_set, tmp_path / "cache", ids


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
