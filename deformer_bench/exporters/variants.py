"""Variants of an exported graph set, made with onnxruntime's own tools and checked against their float32 parent.

    optimized   onnxruntime's transformer optimizer (fused Attention, SkipLayerNormalization, BiasGelu, ...);
                the record counts the fused operators per graph, and the Attention count must equal the layers
                the graph runs (the upper graph starts from hidden states: it must fuse as well)
    int8        dynamic quantization (onnxruntime.quantization.quantize_dynamic), int8 weights per tensor,
                activations quantized at run time: the x86 recipe (VNNI) ...
    int8-arm64  ... and the arm64 one: symmetric per-channel int8 weights
    float16     onnxruntime's float16 conversion with float32 inputs and outputs kept (for GPUs)
    ort         the ORT format (`<graph>.ort`, onnxruntime's convert_onnx_models_to_ort, fixed optimizations for
                an ARM target) of the last CPU variant made (int8-arm64, int8, optimized or float32), for mobile
                runtimes; with the required_operators.config a reduced onnxruntime build needs

A variant is made from `optimized` when that is asked for too (stacked: fused, then quantized or halved), else from
the exported float32 graphs. Each is
written to OUT/variants/<name>/ under the contract's file names, listed in manifest.json under "variants"
(recipe, parent, sha256 of every graph, validation), and validated on every path against the float32 graphs:
a stated tolerance on logits and passage states (TOLERANCES). int8's is a sanity bound, not an accuracy claim:
what int8 costs in F1 is deformer-eval's to say.
"""

import contextlib
import os
import shutil
from pathlib import Path

from ..contracts.errors import ExportError, first_line
from ..contracts.graphs import GRAPHS
from ..contracts.hashing import file_sha256
from ..contracts.manifest import ORT_EXTRA_FILES, VARIANTS, VARIANTS_DIR
from ..contracts.protocol import InputSpec
from ..runtime.parity import compare, reference_outputs
from ..runtime.paths import make_inputs
from .unused_inputs import restore_unused_inputs

TOLERANCES = {"float32": 1e-3, "optimized": 1e-3, "float16": 0.1, "int8": 5.0, "int8-arm64": 5.0}
ORT_PARENTS = ("int8-arm64", "int8", "optimized")  # the ort variant converts the first of these made
# the layers each graph runs, for the fused-attention check
GRAPH_LAYERS = {"lower_question": lambda k, layers: k, "lower_passage": lambda k, layers: k,
                "upper": lambda k, layers: layers - k, "full": lambda k, layers: layers}


def variant_order(names) -> list:
    """The asked variants in build order (optimized first: the others are made from it), each once."""
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants: {', '.join(unknown)}")
    return [name for name in VARIANTS if name in names]


def optimize(source: Path, out: Path, graph: str, model: dict) -> dict:
    """onnxruntime's transformer optimizer (Python fusions only, opt_level 0: the session applies its own
    graph optimizations at run time); returns the fused operator counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # The 2D masks go to the fused Attention as they are. The bert default sums each row to one length (padding at
    # the end only), but [question; passage] pads in the middle when the question is short: that default moved the
    # trained teacher's logits by up to 2.4 on such rows (it passed a validation of full-length rows only).
    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)
    optimized = optimize_model(str(source), model_type="bert", num_heads=model["num_attention_heads"],
                               hidden_size=model["hidden_size"], opt_level=0, optimization_options=options)
    optimized.save_model_to_file(str(out))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


@contextlib.contextmanager
def working_directory(path: Path):
    """contextlib.chdir, which Python 3.10 lacks."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def quantize(source: Path, out: Path, per_channel: bool) -> None:
    """onnxruntime's pre-processing (symbolic shape inference, which knows its fused operators; no further
    optimization), then dynamic quantization."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(f".{out.stem}.prepared.onnx")
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Please consider to run pre-processing": it was run
    try:
        # When its shape inference is incomplete, onnxruntime saves sym_shape_infer_temp.onnx (+ data) into the
        # working directory before raising: run it in OUT's scratch folder, never in the user's.
        with working_directory(out.parent):
            try:
                quant_pre_process(str(source.resolve()), str(prepared.resolve()), skip_optimization=True)
            except Exception as error:  # onnxruntime raises a bare Exception
                if "Incomplete symbolic shape inference" not in str(error):
                    raise
                # The exported float32 graphs stump its symbolic inference (fused graphs need it: their
                # operators are onnxruntime's own); ONNX's shape inference knows every standard operator.
                quant_pre_process(str(source.resolve()), str(prepared.resolve()), skip_optimization=True,
                                  skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=False, extra_options={"WeightSymmetric": True})
    finally:
        quiet.setLevel(level)
        prepared.unlink(missing_ok=True)


def to_float16(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(out))


def make_graph(name: str, graph: str, source: Path, out: Path, model: dict):
    """One graph of one variant; the fused operator counts for `optimized`, else None. Inputs the graph ignores
    (the masks of k=0's lower graphs, say), which the optimizer prunes, are put back: the contract names them."""
    fused = None
    if name == "optimized":
        fused = optimize(source, out, graph, model)
    elif name in ("int8", "int8-arm64"):
        quantize(source, out, per_channel=name == "int8-arm64")
    else:
        to_float16(source, out)
    restore_unused_inputs(out, GRAPHS[graph], model["hidden_size"])
    return fused


def variant_file(name: str, spec) -> str:
    return spec.ort_file_name if name == "ort" else spec.file_name


def to_ort_format(parent_dir: Path, out_dir: Path) -> None:
    """The parent's four graphs in the ORT format, optimized once, here, for an ARM target (a phone or board
    then skips graph optimization at load), with the operator list a reduced onnxruntime build needs."""
    import contextlib
    import io
    import logging
    import tempfile

    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        for spec in GRAPHS.values():  # the parent folder may hold other variants; convert only its graphs
            shutil.copyfile(parent_dir / spec.file_name, Path(scratch) / spec.file_name)
        narrators = [logging.getLogger(name) for name in ("ort_format_model", "ort_format_model.utils")]
        levels = [narrator.level for narrator in narrators]
        for narrator in narrators:
            narrator.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it narrates every model it converts
                convert_onnx_models_to_ort(Path(scratch), output_dir=out_dir,
                                           optimization_styles=[OptimizationStyle.Fixed], target_platform="arm")
        finally:
            for narrator, level in zip(narrators, levels):
                narrator.setLevel(level)


def fusion_problems(fused: dict, layer: int, num_layers: int) -> list:
    """Graphs whose fused Attention count is not their number of layers."""
    problems = []
    for graph, counts in fused.items():
        expected = GRAPH_LAYERS[graph](layer, num_layers)
        if counts.get("Attention", 0) != expected:
            problems.append(f"{graph}: {counts.get('Attention', 0)} fused Attention for {expected} layers")
    return problems


def build_variant(name: str, parent_dir: Path, parent: str, float32_dir: Path, out_dir: Path, model: dict,
                  deformer: dict) -> dict:
    """Write out_dir (the variant's four graphs) and return its manifest entry, validated against float32."""
    out_dir.mkdir(parents=True)
    fused = {}
    if name == "ort":
        try:
            to_ort_format(parent_dir, out_dir)
        except Exception as error:  # the converter raises what onnxruntime raises
            raise ExportError(f"converting the {parent} graphs to the ORT format failed: {first_line(error)}",
                              "export without --ort-format, or report the model") from None
    for graph, spec in GRAPHS.items():
        if name == "ort":
            continue
        try:
            counts = make_graph(name, graph, parent_dir / spec.file_name, out_dir / spec.file_name, model)
        except Exception as error:  # the tools raise what onnx, numpy and their own checks raise
            raise ExportError(f"making the {name} variant of {graph} failed: {first_line(error)}",
                              "export without that variant, or report the model") from None
        if counts is not None:
            fused[graph] = counts
    files = {graph: variant_file(name, spec) for graph, spec in GRAPHS.items()}
    keep = set(files.values()) | (set(ORT_EXTRA_FILES) if name == "ort" else set())
    for leftover in out_dir.iterdir():  # the quantizer may leave helper files beside its output
        if leftover.name not in keep:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    cases = variant_cases(float32_dir, out_dir, model, deformer)
    tolerance = TOLERANCES[parent if name == "ort" else name]
    worst = {}
    problems = []
    for case in cases:
        record = compare(case.pop("outputs"), case.pop("reference"), tolerance)
        case["max_abs_diff"] = record["max_abs_diff"]
        for output, difference in record["max_abs_diff"].items():
            worst[output] = max(worst.get(output, 0.0), difference)
        problems += record["problems"]
    if problems:
        raise ExportError(f"the {name} variant differs from the float32 graphs beyond {tolerance:g}: "
                          + "; ".join(problems[:3]), "export without that variant, or report the model")
    entry = {
        "parent": parent,
        "recipe": RECIPES[name],
        "graphs": {graph: {"file": files[graph], "sha256": file_sha256(out_dir / files[graph])}
                   for graph in GRAPHS},
        "validation": {"against": "float32", "tolerance": tolerance, "worst_max_abs_diff": worst, "cases": cases},
    }
    if fused:
        entry["fused_operators"] = fused
        entry["fusion_problems"] = fusion_problems(fused, deformer["layer"], model["num_layers"])
    return entry


def variant_cases(float32_dir: Path, variant_dir: Path, model: dict, deformer: dict) -> list:
    """Every path of both graph sets on the same inputs: batch 1 at full lengths, batch 2 at short ones with its
    second row padded (a fused attention must honour the masks: random full-length rows would not show it)."""
    question_len, passage_len = deformer["question_len"], deformer["passage_len"]
    cases = []
    for batch, lengths in ((1, (question_len, passage_len)), (2, (max(2, question_len // 3), max(2, passage_len // 4)))):
        inputs = make_inputs(InputSpec(batch_size=batch, question_len=lengths[0], passage_len=lengths[1],
                                       passage_token_type=deformer["passage_token_type"],
                                       vocab_size=model["vocab_size"], seed=0))
        if batch > 1:
            pad_last_row(inputs)
        cases.append({"batch": batch, "question_len": lengths[0], "passage_len": lengths[1],
                      "reference": reference_outputs(float32_dir, inputs),
                      "outputs": reference_outputs(variant_dir, inputs)})
    return cases


def pad_last_row(inputs: dict) -> None:
    """Mask the second half of the last row's question and two thirds of its passage, in place."""
    import numpy as np

    question_mask, passage_mask = inputs["question_attention_mask"], inputs["passage_attention_mask"]
    question_mask[-1, max(1, question_mask.shape[1] // 2):] = 0
    passage_mask[-1, max(1, passage_mask.shape[1] // 3):] = 0
    inputs["attention_mask"] = np.concatenate([question_mask, passage_mask], axis=1)


RECIPES = {
    "optimized": "onnxruntime.transformers.optimizer.optimize_model(model_type='bert', opt_level=0, raw attention "
                 "masks)",
    "int8": "onnxruntime.quantization.quantize_dynamic(QInt8 weights, per tensor, symmetric; x86 VNNI)",
    "int8-arm64": "onnxruntime.quantization.quantize_dynamic(QInt8 weights, per channel, symmetric; arm64)",
    "float16": "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
    "ort": "onnxruntime.tools.convert_onnx_models_to_ort(optimization_style=Fixed, target_platform='arm')",
}


def build_variants(names, staging: Path, model: dict, deformer: dict, progress=None) -> dict:
    """Every asked variant under staging/variants/, in order; {name: manifest entry}."""
    entries = {}
    for name in variant_order(names):
        parent = "optimized" if name != "optimized" and "optimized" in entries else "float32"
        if name == "ort":
            parent = next((made for made in ORT_PARENTS if made in entries), "float32")
        parent_dir = staging / VARIANTS_DIR / parent if parent != "float32" else staging
        if progress:
            progress(name)
        entries[name] = build_variant(name, parent_dir, parent, staging, staging / VARIANTS_DIR / name, model,
                                      deformer)
    return entries
