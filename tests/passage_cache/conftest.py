"""What the passage cache's tests share: a few windows of the tiny graph set (tests/conftest.py's tiny_graphs), the
states lower_passage gives them, a build of them, and a small complete cache."""

import numpy as np
import onnxruntime
import pytest

from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import build_passage_cache
from deformer_bench.serving import evaluation_session


def windows():
    """[10, 24] passage ids and mask for the tiny graph set (vocab 120): 4 distinct windows, repeated as SQuAD
    repeats a paragraph's windows for each of its questions."""
    distinct_ids = np.random.default_rng(0).integers(1, 120, size=(4, 24))
    distinct_mask = np.ones_like(distinct_ids)
    distinct_mask[0, 20:] = 0  # one padded window
    distinct_ids[0, 20:] = 0
    order = np.array([0, 0, 1, 2, 1, 0, 3, 3, 2, 1])
    return distinct_ids[order], distinct_mask[order]


def direct_states(graph_set, ids, mask):
    return onnxruntime.InferenceSession(str(graph_set.path("lower_passage"))).run(
        None, {"passage_input_ids": ids, "passage_attention_mask": mask})[0]


def build(graph_set, ids, mask, out, **options):
    return build_passage_cache(graph_set, ids, mask, out, evaluation_session, progress=False, **options)


@pytest.fixture
def cache(tiny_graphs, tmp_path):
    """A complete float32 cache of 4 windows in two segments of 2: (graph set, its folder, ids). It shadows pytest's
    own `cache` fixture in this folder, which no test here uses."""
    graph_set = load_graph_set(tiny_graphs)
    ids = np.random.default_rng(0).integers(1, 120, size=(4, 24))
    build_passage_cache(graph_set, ids, np.ones_like(ids), tmp_path / "cache", evaluation_session, progress=False,
                        segment_windows=2)
    return graph_set, tmp_path / "cache", ids
