"""export(ExportRequest) -> ExportResult: a model's DeFormer graphs (lower_question, lower_passage, upper, full),
each validated against PyTorch, with manifest.json and the variants asked for (what deformer-export does)."""

import sys
from dataclasses import dataclass
from pathlib import Path

from ..exporters.onnx_export import DEFAULT_OPSET, check_destination, check_opset, export_graph_set
from ..model import Deformer
from .common import PathFields


@dataclass
class ExportRequest(PathFields):
    """One field per deformer-export option (README, "Export"): lengths, k and the position offset default to
    the model's deformer.json (a plain Hugging Face directory needs `layer`); `variants` are written besides the
    float32 graphs: optimized, int8, int8-arm64, float16, ort."""

    model_dir: Path
    out_dir: Path
    layer: int = None
    question_len: int = None
    passage_len: int = None
    position_offset: str = None
    opset: int = None
    variants: tuple = ()
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()  # model_dir, out_dir
        self.variants = tuple(self.variants)


@dataclass
class ExportResult:
    """The graph set written: its folder, its manifest (as written) and the split."""

    directory: Path
    manifest: dict
    layer: int
    num_layers: int
    qa_head_trained: bool

    @property
    def worst_difference(self) -> float:
        """The largest |ONNX - PyTorch| output difference over the validation's shapes."""
        return max(diff for case in self.manifest["validation"]["cases"] for diff in case["max_abs_diff"].values())


def export(request: ExportRequest) -> ExportResult:
    opset = DEFAULT_OPSET if request.opset is None else request.opset
    check_opset(opset)  # fail before the model loads
    check_destination(request.out_dir, request.model_dir, request.overwrite)
    deformer = Deformer.from_pretrained(request.model_dir, layer=request.layer, question_len=request.question_len,
                                        passage_len=request.passage_len,
                                        passage_position_offset=request.position_offset)
    if not deformer.qa_head_trained:
        print(f"note: {request.model_dir} has no trained QA head; a deterministic random head was used "
              "(fine for speed, meaningless for answers)", file=sys.stderr)
    manifest = export_graph_set(deformer, request.out_dir, opset=opset, overwrite=request.overwrite,
                                progress=request.progress, variants=list(request.variants))
    return ExportResult(request.out_dir, manifest, deformer.config.layer, deformer.num_layers,
                        deformer.qa_head_trained)
