"""Export a DeFormer as lower_question / lower_passage / upper / full ONNX graphs plus manifest.json.

Everything is written to a hidden temporary directory beside OUT/ and renamed only once all graphs
exist and validate, so an interrupted or failed export leaves no OUT/.
"""

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from deformer_bench import __version__
from deformer_bench.errors import OutputExistsError
from deformer_bench.files import staged_directory

from .graphs import GRAPHS, GraphModule, example_inputs
from .manifest import build_manifest, write_manifest
from .validate import ValidationSettings, validate_graph_set

DEFAULT_OPSET = 18  # optimum's recommended minimum for BERT


def export_split_graph(deformer, name: str, path: Path, opset: int) -> None:
    """One split graph via the TorchScript exporter (dynamic batch and length axes)."""
    spec = GRAPHS[name]
    config = deformer.config
    tensors = example_inputs(deformer, 2, config.question_len, config.passage_len)
    module = GraphModule(deformer, name).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(tensors[input_name] for input_name in spec.inputs),
            str(path),
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    restore_unused_inputs(path, spec, deformer.hidden_size)


def restore_unused_inputs(path: Path, spec, hidden_size: int) -> None:
    """Put back inputs the exporter dropped because the graph ignores them.

    At k=0 the lower graphs ignore the mask, at k=L the upper graph ignores both masks, and optimum's
    RoBERTa graph has no token_type_ids; the input names are a contract all the same, so every graph
    takes every input its spec names, in order.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    present = {graph_input.name: graph_input for graph_input in model.graph.input}
    if set(spec.inputs) <= set(present):
        return
    inputs = []
    for name, axes in spec.inputs.items():
        if name in present:
            inputs.append(present[name])
            continue
        element = TensorProto.FLOAT if name.endswith("hidden") else TensorProto.INT64
        shape = [hidden_size if axis == "hidden" else axis for axis in axes]
        inputs.append(helper.make_tensor_value_info(name, element, shape))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_full_graph(deformer, path: Path, opset: int) -> None:
    """The unsplit model exactly as optimum exports it for question answering."""
    from optimum.exporters.onnx import onnx_export_from_model

    with tempfile.TemporaryDirectory(dir=path.parent) as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet = [logging.getLogger(name) for name in ("optimum", "transformers")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            onnx_export_from_model(deformer.qa_model, scratch, task="question-answering", opset=opset,
                                   do_validation=False)
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
        shutil.move(os.path.join(scratch, "model.onnx"), path)
    # optimum gives RoBERTa no token_type_ids (one token type): the contract keeps the input, unused.
    restore_unused_inputs(path, GRAPHS["full"], deformer.hidden_size)


def export_graph_set(deformer, out_dir, opset: int = DEFAULT_OPSET, overwrite: bool = False,
                     validation: ValidationSettings = ValidationSettings(), progress: bool = True) -> dict:
    """Write OUT/ with the four graphs and manifest.json; returns the manifest."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(f"output directory {out_dir} already exists",
                                "choose a new OUT/ or pass --overwrite to replace it")
    with staged_directory(out_dir, replace=True) as staging:
        steps = tqdm(list(GRAPHS), desc="export", unit="graph", disable=not progress)
        for name in steps:
            steps.set_postfix_str(name)
            path = staging / GRAPHS[name].file_name
            if name == "full":
                export_full_graph(deformer, path, opset)
            else:
                export_split_graph(deformer, name, path, opset)
        record = validate_graph_set(deformer, staging, validation)
        manifest = build_manifest(deformer, staging, opset, record, __version__)
        write_manifest(staging, manifest)
    return manifest

