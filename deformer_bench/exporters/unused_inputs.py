"""Every exported graph takes every input its spec names (contracts.graphs), in order, even one it ignores."""

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from ..contracts.graphs import FLOAT32, HIDDEN


def restore_unused_inputs(path: Path, spec, hidden_size: int) -> None:
    """Put back inputs the exporter dropped because the graph ignores them.

    At k=0 the lower graphs ignore the mask, at k=L the upper graph ignores both masks, and optimum's
    RoBERTa graph has no token_type_ids; the input names are a contract all the same, so every graph
    takes every input its spec names, in order.
    """
    model = onnx.load(str(path))
    present = {graph_input.name: graph_input for graph_input in model.graph.input}
    if set(spec.inputs) <= set(present):
        return
    inputs = []
    for name, axes in spec.inputs.items():
        if name in present:
            inputs.append(present[name])
            continue
        element = TensorProto.FLOAT if spec.input_dtype(name) == FLOAT32 else TensorProto.INT64
        shape = [hidden_size if axis == HIDDEN else axis for axis in axes]
        inputs.append(helper.make_tensor_value_info(name, element, shape))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
