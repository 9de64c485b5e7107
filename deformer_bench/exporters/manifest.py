"""manifest.json written: what a graph set is, where it came from, and proof that it was validated (the reader,
which every command uses, is contracts.manifest)."""

import json
from pathlib import Path

from ..contracts.graphs import GRAPHS
from ..contracts.hashing import file_sha256
from ..contracts.manifest import MANIFEST_FILE, MANIFEST_FORMAT_VERSION


def build_manifest(deformer, directory: Path, opset: int, validation: dict, tool_version: str) -> dict:
    return {
        "format_version": MANIFEST_FORMAT_VERSION,
        "tool": {"name": "deformer-bench", "version": tool_version},
        "model": {
            "fingerprint_sha256": deformer.fingerprint(),
            "architecture": deformer.hf_config.model_type,
            "num_layers": deformer.num_layers,
            "hidden_size": deformer.hidden_size,
            "num_attention_heads": deformer.hf_config.num_attention_heads,
            "intermediate_size": deformer.hf_config.intermediate_size,
            "vocab_size": deformer.hf_config.vocab_size,
            "qa_head_trained": deformer.qa_head_trained,
            # absolute: deformer-answer and deformer-cache take the tokenizer from here, from any directory
            "source": str(Path(deformer.source_dir).resolve()) if getattr(deformer, "source_dir", None)
            else "in-memory",
        },
        "deformer": deformer.identity(),
        "opset": opset,
        "dtype": "float32",
        "graphs": {
            name: {
                "file": spec.file_name,
                "sha256": file_sha256(Path(directory) / spec.file_name),
                "inputs": list(spec.inputs),
                "outputs": list(spec.outputs),
            }
            for name, spec in GRAPHS.items()
        },
        "validation": validation,
    }


def write_manifest(directory: Path, manifest: dict) -> None:
    (Path(directory) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
