"""What the passage cache's tests share: a few windows of the tiny graph set (tests/conftest.py's tiny_graphs), the
states lower_passage gives them, and a build of them."""

import numpy as np
import onnxruntime

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
