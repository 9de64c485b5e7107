"""manifest.json: what a graph set is, where it came from, and proof that it was validated.

Readers refuse a format_version they do not know and any graph whose bytes changed since export.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from deformer_bench.errors import ManifestError

from .graphs import GRAPHS

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT_VERSION = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(deformer, directory: Path, opset: int, validation: dict, tool_version: str) -> dict:
    config = deformer.config
    return {
        "format_version": MANIFEST_FORMAT_VERSION,
        "tool": {"name": "deformer-bench", "version": tool_version},
        "model": {
            "fingerprint_sha256": deformer.fingerprint(),
            "architecture": deformer.hf_config.model_type,
            "num_layers": deformer.num_layers,
            "hidden_size": deformer.hidden_size,
            "intermediate_size": deformer.hf_config.intermediate_size,
            "vocab_size": deformer.hf_config.vocab_size,
            "qa_head_trained": deformer.qa_head_trained,
            "source": str(getattr(deformer, "source_dir", "") or "in-memory"),
        },
        "deformer": {
            "layer": config.layer,
            "question_len": config.question_len,
            "passage_len": config.passage_len,
            "passage_position_offset": config.passage_position_offset,
            "passage_first_position": config.passage_first_position(),
            "passage_token_type": deformer.architecture.passage_token_type(deformer.hf_config),
        },
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


@dataclass(frozen=True)
class GraphSet:
    """An exported, verified graph set on disk."""

    directory: Path
    manifest: dict

    def path(self, graph: str) -> Path:
        return self.directory / self.manifest["graphs"][graph]["file"]

    @property
    def layer(self) -> int:
        return self.manifest["deformer"]["layer"]


def load_graph_set(directory) -> GraphSet:
    """Read manifest.json and check that every graph it names is there with the recorded hash."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST_FILE}", "give a directory written by deformer-export")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise ManifestError(f"{manifest_path} is not valid JSON: {error}", "re-export the graph set") from None
    version = manifest.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        raise ManifestError(
            f"{manifest_path} has format_version {version!r}; this version reads {MANIFEST_FORMAT_VERSION}",
            "re-export the graph set with this version of deformer-export",
        )
    graphs = manifest.get("graphs", {})
    for name in GRAPHS:
        entry = graphs.get(name)
        if entry is None:
            raise ManifestError(f"{manifest_path} does not list the {name} graph", "re-export the graph set")
        path = directory / entry["file"]
        if not path.is_file():
            raise ManifestError(f"graph {path} named by the manifest is missing", "re-export the graph set")
        if file_sha256(path) != entry["sha256"]:
            raise ManifestError(
                f"graph {path} does not match its manifest (sha256 differs): it changed after export",
                "re-export the graph set instead of editing its files",
            )
    return GraphSet(directory, manifest)
