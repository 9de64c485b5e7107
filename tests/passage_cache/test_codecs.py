"""float16 and int8 storage of passage states (deformer_bench/passage_cache/codecs.py): close to float32 in less room,
int8 keeping each token's largest state, and states float16 cannot hold or that are not finite refused."""

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache.codecs import decode, encode
from tests.passage_cache.conftest import build, windows


@pytest.mark.parametrize("dtype, tolerance, ratio", [("float16", 2e-3, 0.5), ("int8", 2e-2, 0.25 + 1 / 32)])
def test_float16_and_int8_states_decode_close_to_float32_in_less_room(tiny_graphs, tmp_path, dtype, tolerance,
                                                                      ratio):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    full = build(graph_set, ids, mask, tmp_path / "float32")
    small = build(graph_set, ids, mask, tmp_path / dtype, dtype=dtype)
    exact = full.passage_hidden(full.rows(ids, mask))
    read = small.passage_hidden(small.rows(ids, mask))
    assert read.dtype == np.float32
    scale = np.abs(exact).max(axis=-1, keepdims=True)
    assert (np.abs(read - exact) <= tolerance * scale).all()
    stored = [small.array(index, "passage_hidden").nbytes + (small.array(index, "passage_scale").nbytes
                                                             if dtype == "int8" else 0)
              for index in range(len(small.segments))]
    assert sum(stored) == pytest.approx(ratio * full.array(0, "passage_hidden").nbytes)


def test_int8_keeps_each_tokens_largest_state_and_zero_tokens():
    hidden = np.array([[[0.0, 0.0, 0.0], [1.0, -2.54, 0.5]]], dtype=np.float32)
    encoded = encode(hidden, "int8")
    assert encoded["passage_hidden"].dtype == np.int8 and encoded["passage_scale"].shape == (1, 2)
    decoded = decode(encoded["passage_hidden"], encoded["passage_scale"])
    assert decoded[0, 0].tolist() == [0.0, 0.0, 0.0] and decoded[0, 1, 1] == pytest.approx(-2.54)
    assert np.abs(decoded - hidden).max() <= 2.54 / 127 / 2 + 1e-7


def test_states_float16_cannot_hold_and_states_that_are_not_finite_are_refused():
    hidden = np.full((1, 2, 3), 70000.0, dtype=np.float32)
    with pytest.raises(PassageCacheError, match="beyond float16's 65504"):
        encode(hidden, "float16")
    assert encode(hidden, "int8")["passage_scale"][0, 0] == pytest.approx(70000 / 127)
    hidden[0, 1, 2] = np.nan
    for dtype in ("float32", "float16", "int8"):
        with pytest.raises(PassageCacheError, match="not finite"):
            encode(hidden, dtype)
