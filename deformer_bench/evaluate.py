"""End-to-end SQuAD evaluation of a model directory, through PyTorch or an exported graph set."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, ModelDirError
from .model import Deformer
from .passage_cache import CacheCommands
from .serving import batch_slices, load_tokenizer, onnx_evaluation_logits
from .squad.data import load_squad
from .squad.features import check_doc_stride, featurize
from .squad.metric import evaluate
from .squad.postprocess import predictions_from_logits

SPLIT_INPUTS = ("question_input_ids", "question_attention_mask", "passage_input_ids", "passage_attention_mask")


def pytorch_logits(deformer: Deformer, features, batch_size: int = 64, progress: bool = True, device: str = "cpu"):
    """[N, Lq+Lp] start and end logits, float32, computed on `device` (the model is moved there and back)."""
    starts, ends = [], []
    deformer.to(device)
    try:
        with torch.no_grad():
            for part in batch_slices(len(features), batch_size, progress, "pytorch"):
                start, end = deformer(*(torch.from_numpy(getattr(features, name)[part]).to(device)
                                        for name in SPLIT_INPUTS))
                starts.append(start.float().cpu().numpy())
                ends.append(end.float().cpu().numpy())
    finally:
        deformer.to("cpu")
    return np.concatenate(starts), np.concatenate(ends)


def check_graph_set_matches(graph_set, deformer: Deformer, fingerprint: str, model_dir) -> None:
    """Refuse a graph set not exported from these weights (fingerprint) with this whole DeFormer configuration."""
    manifest = graph_set.manifest
    if manifest["model"]["fingerprint_sha256"] != fingerprint:
        raise ModelDirError(f"graph set {graph_set.directory} was not exported from the weights in {model_dir}",
                            "export this model with deformer-export, or give the matching model directory")
    # The whole configuration the graph set fixes: scoring other settings would score another model.
    ours = deformer.identity()
    differing = [f"{key} {manifest['deformer'][key]!r} in the graph set, {ours[key]!r} asked for"
                 for key in ours if manifest["deformer"][key] != ours[key]]
    if differing:
        raise ConfigError(f"graph set {graph_set.directory} was exported with another DeFormer configuration: "
                          + "; ".join(differing),
                          "drop the options that differ (the graph set fixes them), or export the model again "
                          "with these settings")


@dataclass
class Evaluation:
    scores: dict  # {"exact_match": ..., "f1": ...}
    predictions: dict
    questions: int
    windows: int
    backend: str
    model_fingerprint_sha256: str  # of the weights evaluated (Deformer.fingerprint); the config is `deformer`
    deformer: dict  # the DeformerConfig evaluated, as a dict
    passage_cache: dict | None = None  # ONNX only: windows, distinct windows, built or reused, seconds


def evaluate_model(model_dir, dataset, onnx_dir=None, limit=None, doc_stride: int = 128, batch_size: int = 64,
                   layer=None, question_len=None, passage_len=None, progress: bool = True,
                   warn=None, passage_cache_dir=None, passage_position_offset=None, device: str = "cpu",
                   onnx_variant=None, passage_cache_commands=None) -> Evaluation:
    """Score `model_dir` on a SQuAD file. With `onnx_dir`, through that graph set: its manifest fixes k, the
    lengths and the offset (the defaults here), and any setting given that differs from it is refused;
    `onnx_variant` picks one of its variants (exporters/variants.py), checked against the same weights.
    `passage_cache_commands`: the CacheCommands a kept passage cache names (serving.open_passage_cache)."""
    from exporters.manifest import load_graph_set

    model_dir = Path(model_dir)
    if passage_cache_dir is not None and onnx_dir is None:
        raise ConfigError("a passage cache needs an exported graph set", "give --onnx OUT/ with --passage-cache")
    asked = {"layer": layer, "question_len": question_len, "passage_len": passage_len,
             "passage_position_offset": passage_position_offset}
    graph_set = None
    if onnx_dir is not None:
        graph_set = load_graph_set(onnx_dir, onnx_variant)  # hashes every graph once
        asked = {key: graph_set.deformer[key] if value is None else value for key, value in asked.items()}
    deformer = Deformer.from_pretrained(model_dir, **asked)
    tokenizer = load_tokenizer(model_dir)
    config = deformer.config
    check_doc_stride(config.passage_len, doc_stride)
    if not deformer.qa_head_trained and warn is not None:
        warn(f"{model_dir} has no trained QA head (a deterministic random one is used): its scores are meaningless")
    fingerprint = deformer.fingerprint()  # of the weights evaluated, recorded with the scores and the config
    if graph_set is not None:
        check_graph_set_matches(graph_set, deformer, fingerprint, model_dir)
    examples = load_squad(dataset)
    if limit:
        examples = examples[:limit]
    features = featurize(examples, tokenizer, config.question_len, config.passage_len, doc_stride, progress=progress)
    if graph_set is not None:
        start, end, passage_cache = onnx_evaluation_logits(graph_set, features, passage_cache_dir, batch_size,
                                                           progress, doc_stride,
                                                           passage_cache_commands or CacheCommands())
        backend = "onnxruntime"
    else:
        start, end = pytorch_logits(deformer, features, batch_size, progress, device)
        backend, passage_cache = ("pytorch" if device == "cpu" else f"pytorch ({device})"), None
    predictions = predictions_from_logits(examples, features, start, end, config.question_len)
    scores = evaluate(examples, predictions, warn=warn)
    return Evaluation(scores, predictions, len(examples), len(features), backend, fingerprint, asdict(config),
                      passage_cache)
