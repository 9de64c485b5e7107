"""Export a DeFormer as lower_question / lower_passage / upper / full ONNX graphs plus manifest.json.

Everything is written to a hidden temporary directory beside OUT/ and renamed only once all graphs
exist and validate, so an interrupted or failed export leaves no OUT/.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from deformer_bench import __version__
from deformer_bench.errors import (ConfigError, ExportError, ManifestError, OutputExistsError, OutputLocationError,
                                   first_line)
from deformer_bench.files import (check_distinct_paths, check_output_dir, clean_stale_staging, describe_obstacle,
                                  staged_directory, unlisted_entries)

from deformer_bench.runtime.contract import FLOAT32, GRAPHS, HIDDEN

from .graphs import GraphModule, example_inputs
from .manifest import build_manifest, graph_set_entries, write_manifest
from .validate import ValidationSettings, validate_graph_set
from .variants import build_variants, variant_order

DEFAULT_OPSET = 18  # optimum's recommended minimum for BERT
MIN_OPSET = 14  # scaled_dot_product_attention exports from opset 14 on (13 fails in torch's exporter)


def check_opset(opset: int) -> None:
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET  # dynamo=False's limit

    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset!r} is outside what the exporter supports ({MIN_OPSET}..{MAX_OPSET})",
                          f"give --opset between {MIN_OPSET} and {MAX_OPSET} (default {DEFAULT_OPSET})")


@contextlib.contextmanager
def exporter_errors(graph: str, opset: int):
    """An exporter failure becomes one ExportError naming the graph and opset, not a page of TorchScript."""
    try:
        yield
    except (OutputExistsError, OutputLocationError, OSError):
        raise
    except Exception as error:
        raise ExportError(f"exporting the {graph} graph at opset {opset} failed: {first_line(error)}",
                          "try another --opset, or report the model and opset") from None


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
        element = TensorProto.FLOAT if spec.input_dtype(name) == FLOAT32 else TensorProto.INT64
        shape = [hidden_size if axis == HIDDEN else axis for axis in axes]
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


def check_destination(out_dir, model_dir=None, overwrite: bool = False) -> None:
    """Refuse, before any work, an OUT/ that exporting (and --overwrite's replacing) could harm: one that is,
    holds or lies inside the model being read (files.check_distinct_paths), a file or a broken link, and, for
    --overwrite, anything but a graph set of ours (replaceable_entries) or the folder the command runs in."""
    out_dir = Path(out_dir)
    if model_dir is not None:
        check_distinct_paths({"OUT/": out_dir}, {"the model directory": model_dir})
    clean_stale_staging(out_dir)  # a killed export's leftovers; may put back an OUT/ it had moved aside
    exists = out_dir.exists() or out_dir.is_symlink()
    if exists and not out_dir.is_dir():
        raise OutputLocationError(f"OUT/ {out_dir} {describe_obstacle(out_dir, out_dir)}",
                                  "give the path of a new directory")
    if exists and not overwrite:
        raise OutputExistsError(f"output directory {out_dir} already exists",
                                "choose a new OUT/ or pass --overwrite to replace it")
    if exists:
        check_replaceable(out_dir)
    check_output_dir(out_dir.parent, "the folder of OUT/")


def replaceable_entries(out_dir: Path) -> set:
    """What --overwrite may remove in `out_dir` (relative paths): exactly what its manifest lists (the graphs,
    each variant's folder and graphs, the ort variant's operator config, the manifest itself); nothing in an
    empty folder. A folder without a valid manifest of ours is not ours: refused."""
    if not any(out_dir.iterdir()):
        return set()
    try:
        return graph_set_entries(out_dir)
    except ManifestError as error:
        raise OutputLocationError(f"--overwrite refuses to replace {out_dir}: it is not a graph set written by "
                                  f"deformer-export ({error.message})",
                                  "--overwrite only replaces graph sets; give a new OUT/") from None


def check_replaceable(out_dir: Path) -> None:
    """--overwrite removes exactly what the manifest lists, and refuses (naming the first) when anything else is
    there, at any depth, or when OUT/ holds the folder the command runs in."""
    others = unlisted_entries(out_dir, replaceable_entries(out_dir))
    if others:
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        raise OutputLocationError(f"--overwrite would delete {out_dir / others[0]}, which is not part of the graph set "
                                  f"(its manifest does not list it){more}",
                                  "move what is yours out of OUT/ first, or give a new OUT/")
    cwd, out_real = Path.cwd().resolve(), out_dir.resolve()
    if cwd == out_real or out_real in cwd.parents:
        raise OutputLocationError(f"--overwrite would replace {out_dir}, the folder this command runs in",
                                  "run it from another folder")


def export_graph_set(deformer, out_dir, opset: int = DEFAULT_OPSET, overwrite: bool = False,
                     validation: ValidationSettings = ValidationSettings(), progress: bool = True,
                     variants=()) -> dict:
    """Write OUT/ with the four graphs and manifest.json, and the variants asked for under OUT/variants/
    (exporters/variants.py); returns the manifest."""
    out_dir = Path(out_dir)
    try:
        variants = variant_order(variants)
    except ValueError as error:
        raise ConfigError(str(error), "use optimized, int8, int8-arm64, float16 or ort") from None
    check_opset(opset)
    check_destination(out_dir, getattr(deformer, "source_dir", None), overwrite)
    with staged_directory(out_dir, replace=True, listed=replaceable_entries) as staging:
        steps = tqdm(list(GRAPHS), desc="export", unit="graph", disable=not progress)
        for name in steps:
            steps.set_postfix_str(name)
            path = staging / GRAPHS[name].file_name
            with exporter_errors(name, opset):
                if name == "full":
                    export_full_graph(deformer, path, opset)
                else:
                    export_split_graph(deformer, name, path, opset)
        record = validate_graph_set(deformer, staging, validation)
        manifest = build_manifest(deformer, staging, opset, record, __version__)
        if variants:
            with tqdm(total=len(variants), desc="variants", unit="variant", disable=not progress) as bar:
                manifest["variants"] = build_variants(variants, staging, manifest["model"], manifest["deformer"],
                                                      progress=lambda name: (bar.set_postfix_str(name), bar.update()))
        write_manifest(staging, manifest)
    return manifest

