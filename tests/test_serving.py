from types import SimpleNamespace

import numpy as np

from deformer_bench.serving import evaluation_session, passage_states


def test_evaluation_sessions_do_not_spin(tiny_graphs):
    options = evaluation_session(tiny_graphs / "upper.onnx").get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_passage_states_of_hits_and_misses_are_cut_to_the_positions_asked_for():
    """Cached rows are read at `positions` only; missed ones run lower_passage on their whole windows (as the cache
    was built) and are cut: one [B, positions, H] array in the rows' order, its own contiguous memory."""
    whole = np.arange(4 * 6 * 2, dtype=np.float32).reshape(4, 6, 2)  # [B=4, Lp=6, H=2], row i's states
    asked = []

    def passage_hidden(rows, positions=None):
        asked.append(positions)
        return whole[rows, :positions]

    cache = SimpleNamespace(passage_hidden=passage_hidden)
    lower_passage = SimpleNamespace(run=lambda names, feeds: [whole[feeds["passage_input_ids"][:, 0]]])
    ids = np.arange(4)[:, None].repeat(6, axis=1)  # window i's ids: i (what the fake lower_passage reads)
    for missed in ([False, True, False, True], [True] * 4, [False] * 4):
        missed = np.asarray(missed)
        rows = np.where(missed, -1, np.arange(4))
        for positions in (3, None):
            states = passage_states(cache, rows, missed, lower_passage, ids, np.ones_like(ids), positions)
            np.testing.assert_array_equal(states, whole[:, :positions])
            assert states.flags.c_contiguous
    assert set(asked) == {3, None}
