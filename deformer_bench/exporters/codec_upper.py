"""upper.onnx with a pq codec's product inside it: the graph a server runs when its passage cache is stored in pq
with a learned transform (pca, fisher, opq), so that onnxruntime computes the decode's product, not numpy.

A pq window decodes in two steps (runtime.codec_decode.ProductDecoder): table look-ups give each token's
coefficients [Lp, K], then one product maps them back to the states' coordinates, coefficients @ decoder [K, H]
+ mean. In the query path that product ran in numpy between lower_question and upper, where it cost ~1.1 ms of a
~14 ms question at real lengths (8%, issue 25): upper's ~20 MB of weights evict the decoder's 0.6 MB between
questions, and numpy's BLAS is held to one thread there. Inside upper's graph the product is one more MatMul
that onnxruntime runs on its own threads, next to the MatMuls it already runs (results/passage-cache/codecs,
"The product in upper's graph").

The graph built here takes every input of upper but `passage_hidden`, and in its place `passage_coefficients`
[batch, passage_length, K] float32 (the look-ups only: ProductDecoder.coefficients), and computes

    passage_hidden = (passage_coefficients @ decoder + mean) * passage_attention_mask[..., None]

before upper's own nodes, which are unchanged (cast to upper's input type where that is not float32: the
project's float16 variants keep float32 inputs, so only a graph converted without keep_io_types needs it). The
mask keeps the padding at zero, as the cache reader leaves it (a padded token's coefficients are zero, and would
decode to the mean). The graph is checked by loading it in onnxruntime (check_loads), not by onnx's checker: the
float16 variants' own upper (onnxruntime's converter appends its input casts after the nodes that use them) fails
the checker's topological-order rule, and onnxruntime sorts and runs it.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..contracts.errors import ManifestError, first_line

CODED_INPUT = "passage_coefficients"
STATES_INPUT = "passage_hidden"
MASK_INPUT = "passage_attention_mask"
# The names of what this module adds to the graph (prefixed, so that none meets a name of upper's own).
_PREFIX = "codec_product/"


class CodecGraphError(ManifestError):
    """An upper graph the product cannot be put into (no passage_hidden input, an opset below 13, another width)."""


_HINT = ("export the graph set again (deformer-export: its upper.onnx is damaged or not the contract's), or serve a "
         "cache stored without a transform (--dtype pq with transform=none, float32, float16, int8)")


def upper_with_product(upper_path, decoder: np.ndarray, mean: np.ndarray = None) -> bytes:
    """The serialized ModelProto of `upper_path`'s graph with the product at its front (see the module's doc):
    decoder [K, H], mean [H] or None. Not yet loaded anywhere: check_loads does that."""
    try:
        model = onnx.load(str(upper_path))
    except Exception as error:  # protobuf's DecodeError, OSError, ...: a damaged or missing file
        raise CodecGraphError(f"{upper_path} cannot be read as an ONNX graph: {first_line(error)}", _HINT) from None
    if not model.graph.node:  # an empty (or zeroed) file parses as an empty model
        raise CodecGraphError(f"{upper_path} cannot be read as an ONNX graph: it holds no nodes", _HINT)
    graph = model.graph
    states = _graph_input(graph, STATES_INPUT, upper_path)
    _graph_input(graph, MASK_INPUT, upper_path)
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # Unsqueeze takes its axes as an input from opset 13
        raise CodecGraphError(f"{upper_path}: opset {opset}; the product needs opset 13 or later", _HINT)
    decoder = np.ascontiguousarray(decoder, dtype=np.float32)
    coefficients, hidden = decoder.shape
    shape = [dim.dim_param or dim.dim_value for dim in states.type.tensor_type.shape.dim]
    if len(shape) != 3 or shape[2] not in (hidden, "", 0):  # 0, "": a dimension the graph leaves unnamed
        raise CodecGraphError(f"{upper_path}: passage_hidden is {shape}; the codec decodes to {hidden} dimensions",
                              _HINT)
    element = states.type.tensor_type.elem_type  # float32 (the project's variants keep float32 inputs)
    coded = helper.make_tensor_value_info(CODED_INPUT, TensorProto.FLOAT, [shape[0], shape[1], coefficients])
    position = list(graph.input).index(states)
    graph.input.remove(states)
    graph.input.insert(position, coded)
    graph.initializer.extend(_initializers(decoder, mean))
    for node in reversed(_product_nodes(mean is not None, element)):
        graph.node.insert(0, node)
    return model.SerializeToString()


def product_graph(upper_path, product):
    """upper_with_product(upper_path, *product): the graph a server of a pq cache with a transform runs; None where
    it has no product to put in (`product` None: rq, binary, plain pq) or upper_path is not an ONNX file (a graph set
    in the ORT format only, which onnx cannot edit): the codec then decodes in numpy. Not yet loaded: check_loads,
    or the caller's own session, does that."""
    upper_path = Path(upper_path)
    if product is None or upper_path.suffix != ".onnx" or not upper_path.is_file():
        return None
    return upper_with_product(upper_path, *product)


def check_loads(graph: bytes, upper_path) -> None:
    """Refuse a graph made by upper_with_product that onnxruntime cannot load (on the CPU, where it was made)."""
    import onnxruntime

    try:
        onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own types (Fail, InvalidGraph, ...)
        raise CodecGraphError(f"{upper_path} with the codec's product inside cannot be loaded by onnxruntime: "
                              f"{first_line(error)}", _HINT) from None


def _graph_input(graph, name: str, upper_path):
    found = [graph_input for graph_input in graph.input if graph_input.name == name]
    if not found:
        raise CodecGraphError(f"{upper_path} has no {name} input: not a graph set's upper graph", _HINT)
    return found[0]


def _initializers(decoder: np.ndarray, mean) -> list:
    made = [numpy_helper.from_array(decoder, _PREFIX + "decoder"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), _PREFIX + "last_axis")]
    if mean is not None:
        made.append(numpy_helper.from_array(np.ascontiguousarray(mean, dtype=np.float32), _PREFIX + "mean"))
    return made


def _product_nodes(with_mean: bool, element: int) -> list:
    """coefficients [B, Lp, K] -> passage_hidden [B, Lp, H], in the graph's element type."""
    name = lambda part: _PREFIX + part  # noqa: E731  (the names of the intermediate tensors and nodes)
    nodes = [helper.make_node("MatMul", [CODED_INPUT, name("decoder")], [name("product")], name=name("MatMul"))]
    decoded = name("product")
    if with_mean:
        nodes.append(helper.make_node("Add", [decoded, name("mean")], [name("decoded")], name=name("AddMean")))
        decoded = name("decoded")
    # the padding back to zero: mask [B, Lp] int64 -> [B, Lp, 1] float32
    nodes += [helper.make_node("Cast", [MASK_INPUT], [name("mask")], to=TensorProto.FLOAT, name=name("CastMask")),
              helper.make_node("Unsqueeze", [name("mask"), name("last_axis")], [name("mask3")],
                               name=name("UnsqueezeMask"))]
    masked = STATES_INPUT if element == TensorProto.FLOAT else name("masked")
    nodes.append(helper.make_node("Mul", [decoded, name("mask3")], [masked], name=name("Mask")))
    if element != TensorProto.FLOAT:  # a float16 upper takes its states in float16
        nodes.append(helper.make_node("Cast", [masked], [STATES_INPUT], to=element, name=name("CastStates")))
    return nodes
