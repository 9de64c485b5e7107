"""exporters/codec_upper.py: upper's graph with a pq codec's product inside gives the logits that upper gives on the
states the numpy decode makes, padding included (left zero, as the cache reader leaves it); graphs it cannot take
are refused with a clear error."""

import numpy as np
import onnx
import pytest

from deformer_bench.contracts.errors import ManifestError
from deformer_bench.exporters.codec_upper import CODED_INPUT, CodecGraphError, product_graph, upper_with_product
from deformer_bench.runtime.codec_decode import coefficient_windows, graph_product, make_decoder
from deformer_bench.runtime.sessions import GraphSetSessions, open_session

HIDDEN = 32  # the tiny graphs' hidden size


def pq_decoder(coefficients: int = HIDDEN, seed: int = 0):
    """A pq decoder with a transform back (pca-like: sub-vectors of 4, then [K, 32] and a mean), made by hand."""
    rng = np.random.default_rng(seed)
    groups = coefficients // 4
    codebook = {"centroids": rng.standard_normal(groups * 256 * 4).astype(np.float32),
                "sizes": np.full(groups, 4, dtype=np.int32),
                "decoder": (rng.standard_normal((coefficients, HIDDEN)) / 6).astype(np.float32),
                "mean": rng.standard_normal(HIDDEN).astype(np.float32)}
    return make_decoder("pq", {"m": groups, "transform": "pca", "alpha": 0.1}, codebook)


def test_the_product_in_the_graph_gives_upper_s_logits_on_the_decoded_states(tiny_graphs, tmp_path):
    decoder = pq_decoder(coefficients=24)  # K below H: the coefficients past K decode to nothing but the mean
    rng = np.random.default_rng(1)
    codes = {"codes": rng.integers(0, 256, (2, 24, 6)).astype(np.uint8)}
    mask = np.ones((2, 24), dtype=np.int64)
    mask[1, 17:] = 0  # the second window's padding
    states = decoder.decode({"codes": codes["codes"].reshape(-1, 6)}).reshape(2, 24, HIDDEN)
    states[mask == 0] = 0  # the cache reader leaves the padding zero
    question_ids, question_mask = rng.integers(3, 120, (2, 8)), np.ones((2, 8), dtype=np.int64)
    sessions = GraphSetSessions(tiny_graphs, ("lower_question", "upper"))
    expected = sessions.online(question_ids, question_mask, states, mask)

    graph = upper_with_product(tiny_graphs / "upper.onnx", *graph_product(decoder))
    coded_upper = open_session_bytes(graph, tmp_path)
    coefficients = coefficient_windows(decoder, codes)
    assert coefficients.shape == (2, 24, 24) and coefficients.dtype == np.float32
    got = sessions.online_coded(question_ids, question_mask, coefficients, mask, coded_upper)
    for logits, want in zip(got, expected):
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)
    # upper's own nodes are unchanged, its input passage_hidden now computed in front of them
    model = onnx.load_from_string(graph)
    assert [graph_input.name for graph_input in model.graph.input] == [
        "question_hidden", "question_attention_mask", CODED_INPUT, "passage_attention_mask"]
    original = onnx.load(str(tiny_graphs / "upper.onnx"))
    assert [node.op_type for node in model.graph.node][-len(original.graph.node):] == \
        [node.op_type for node in original.graph.node]


def open_session_bytes(graph: bytes, directory):
    path = directory / "upper-coded.onnx"
    path.write_bytes(graph)
    return open_session(path)


def test_a_codec_without_a_transform_has_no_product_to_move():
    rng = np.random.default_rng(0)
    codebook = {"centroids": rng.standard_normal(8 * 256 * 4).astype(np.float32), "sizes": np.full(8, 4, np.int32)}
    assert graph_product(make_decoder("pq", {"m": 8, "transform": "none", "alpha": 0.1}, codebook)) is None
    levels = rng.standard_normal((HIDDEN, 2)).astype(np.float32)
    binary = make_decoder("binary", {"group": 8}, {"levels": levels, "mean": np.zeros(HIDDEN, np.float32)})
    assert graph_product(binary) is None


def test_a_server_gets_the_graph_only_for_a_product_and_an_onnx_upper(tiny_graphs, tmp_path):
    """product_graph, the one rule both servers (deformer-bench's served path, the scenario benchmark's deformer)
    follow: a graph for a product and an upper.onnx; None without a product or for the ORT format (onnx cannot edit
    it: numpy decodes); a damaged upper.onnx refused, not passed over."""
    product = graph_product(pq_decoder())
    graph = product_graph(tiny_graphs / "upper.onnx", product)
    assert CODED_INPUT in [graph_input.name for graph_input in onnx.load_from_string(graph).graph.input]
    assert product_graph(tiny_graphs / "upper.onnx", None) is None
    ort_format = tmp_path / "upper.ort"
    ort_format.write_bytes(b"an ORT-format graph")
    assert product_graph(ort_format, product) is None
    assert product_graph(tmp_path / "upper.onnx", product) is None  # a graph set in the ORT format only
    (tmp_path / "upper.onnx").write_bytes(b"damaged")
    with pytest.raises(CodecGraphError, match="cannot be read as an ONNX graph"):
        product_graph(tmp_path / "upper.onnx", product)


def test_a_graph_that_is_not_upper_is_refused(tiny_graphs):
    with pytest.raises(CodecGraphError, match="has no passage_hidden input: not a graph set's upper graph") as refused:
        upper_with_product(tiny_graphs / "lower_question.onnx", *graph_product(pq_decoder()))
    assert isinstance(refused.value, ManifestError) and refused.value.exit_code == 2 and refused.value.hint


@pytest.mark.parametrize("content", [b"", b"not a graph at all", None])
def test_a_damaged_or_missing_graph_is_refused(tmp_path, tiny_graphs, content):
    path = tmp_path / "upper.onnx"
    if content is not None:
        path.write_bytes(content if content else (tiny_graphs / "upper.onnx").read_bytes()[:100])
    with pytest.raises(CodecGraphError, match="cannot be read as an ONNX graph"):
        upper_with_product(path, *graph_product(pq_decoder()))


def test_a_decoder_of_another_width_is_refused(tiny_graphs):
    decoder, mean = graph_product(pq_decoder())
    with pytest.raises(CodecGraphError, match=r"passage_hidden is \['batch', 'passage_length', 32\]; the codec "
                                              r"decodes to 16 dimensions"):
        upper_with_product(tiny_graphs / "upper.onnx", decoder[:, :16], mean[:16])


def test_a_float16_variant_s_upper_takes_the_product_too(tiny_graphs, tmp_path):
    """The float16 variant's upper (onnxruntime's converter, float32 inputs kept) is out of onnx's topological order
    and loads in onnxruntime all the same: the product goes in front of it, its logits those of the variant on the
    numpy-decoded states."""
    import json

    from deformer_bench.exporters.codec_upper import check_loads
    from deformer_bench.exporters.variants import make_graph

    model = json.loads((tiny_graphs / "manifest.json").read_text())["model"]
    variant = tmp_path / "upper.onnx"
    make_graph("float16", "upper", tiny_graphs / "upper.onnx", variant, model)
    decoder = pq_decoder()
    graph = upper_with_product(variant, *graph_product(decoder))
    check_loads(graph, variant)
    rng = np.random.default_rng(2)
    codes = {"codes": rng.integers(0, 256, (1, 24, 8)).astype(np.uint8)}
    states = decoder.decode({"codes": codes["codes"].reshape(-1, 8)}).reshape(1, 24, HIDDEN)
    feed = {"question_hidden": rng.standard_normal((1, 8, HIDDEN)).astype(np.float32),
            "question_attention_mask": np.ones((1, 8), np.int64), "passage_attention_mask": np.ones((1, 24), np.int64)}
    expected = open_session(variant).run(None, {**feed, "passage_hidden": states})
    got = open_session_bytes(graph, tmp_path).run(None, {**feed, CODED_INPUT: coefficient_windows(decoder, codes)})
    for logits, want in zip(got, expected):
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-2)  # float16 inside: the states' rounding


def test_a_graph_onnxruntime_cannot_load_is_refused(tiny_graphs):
    from deformer_bench.exporters.codec_upper import check_loads

    with pytest.raises(CodecGraphError, match="cannot be loaded by onnxruntime") as refused:
        check_loads(b"not a graph", tiny_graphs / "upper.onnx")
    assert refused.value.exit_code == 2
