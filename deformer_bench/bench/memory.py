"""The paper's memory metric: bytes requested by all operators for one query.

The sum, over every operator output in the graph, of that tensor's size at concrete input shapes,
from ONNX Runtime's symbolic shape inference. Inputs and weights are not operator requests and are
not counted; the online path's cached passage states are an input of the upper graph.
"""

import numpy as np
import onnx
from onnx import helper


def _concrete(model: onnx.ModelProto, input_shapes: dict) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for graph_input in model.graph.input:
        if graph_input.name in input_shapes:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[graph_input.name]):
                dim.ClearField("dim_param")
                dim.dim_value = size
    return model


def operator_bytes(path, input_shapes: dict) -> tuple:
    """(bytes of all operator outputs, number of outputs whose size could not be resolved)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = _concrete(onnx.load(str(path), load_external_data=False), input_shapes)
    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    infos = {info.name: info for info in list(inferred.graph.value_info) + list(inferred.graph.output)}
    total, unresolved = 0, 0
    for node in inferred.graph.node:
        for name in node.output:
            info = infos.get(name)
            if not name or info is None:
                unresolved += 1
                continue
            tensor_type = info.type.tensor_type
            dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim]
            if any(dim is None for dim in dims):
                unresolved += 1
                continue
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
            total += int(np.prod(dims, dtype=np.int64)) * itemsize
    return total, unresolved
