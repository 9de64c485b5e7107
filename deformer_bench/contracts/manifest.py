"""A graph set's manifest.json, read: what a graph set is, where it came from, which variants it holds, and proof
that it was validated (exporters/manifest.py writes it).

Readers refuse a format_version they do not know, a manifest of another shape, and any graph whose bytes changed
since export. Standard library only: code that runs graphs (serving, the passage cache) reads manifests without
torch.
"""

from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from .errors import ManifestError
from .graphs import GRAPHS
from .hashing import file_sha256
from .readers import read_json

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
# The variants deformer-export makes (exporters/variants.py), each under OUT/variants/<name>/.
VARIANTS_DIR = "variants"
VARIANTS = ("optimized", "int8", "int8-arm64", "float16", "ort")
ORT_EXTRA_FILES = ("required_operators.config",)  # the ort variant's operator list, beside its graphs


def graph_set_source(directory):
    """The model folder a graph set was exported from (its manifest's `source`), without checking the set: the
    default tokenizer of the commands that read it, named before any work so that no output lands in it. None
    when the manifest cannot be read, is refused or names no folder (load_graph_set then says why). Read as every
    manifest is (read_manifest): a `source` given twice is refused, not taken as whichever one JSON keeps."""
    try:
        source = read_manifest(Path(directory))["model"]["source"]
    except ManifestError:
        return None
    return source if source != "in-memory" else None


@dataclass(frozen=True)
class ModelInfo:
    """The model a graph set was exported from (manifest "model")."""

    fingerprint_sha256: str
    architecture: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    qa_head_trained: bool
    source: str  # the model folder (absolute), or "in-memory"
    num_attention_heads: int = None

    @classmethod
    def from_json(cls, section: dict) -> "ModelInfo":
        return cls(**{item.name: section.get(item.name) for item in fields(cls)})


@dataclass(frozen=True)
class DeformerInfo:
    """The DeFormer settings the graphs were exported with (manifest "deformer"): k, lengths, offset, token type."""

    layer: int
    question_len: int
    passage_len: int
    passage_position_offset: str
    passage_first_position: int
    passage_token_type: int

    @classmethod
    def from_json(cls, section: dict) -> "DeformerInfo":
        return cls(**{item.name: section[item.name] for item in fields(cls)})


class ManifestSections:
    """The typed sections of the manifest a record holds as `manifest` (a graph set, a benchmark's config)."""

    manifest: dict

    @property
    def model(self) -> ModelInfo:
        return ModelInfo.from_json(self.manifest["model"])

    @property
    def deformer(self) -> DeformerInfo:
        return DeformerInfo.from_json(self.manifest["deformer"])


@dataclass(frozen=True)
class GraphSet(ManifestSections):
    """An exported, verified graph set on disk (or one of its variants: then `directory` is the variant's
    folder, `manifest["graphs"]` its graphs and `manifest["variant"]` its name). `manifest` is the JSON as
    written (what records copy); `model` and `deformer` are its typed sections."""

    directory: Path
    manifest: dict

    @property
    def variant(self) -> str:
        return self.manifest.get("variant", "float32")

    def path(self, graph: str) -> Path:
        return self.directory / self.manifest["graphs"][graph]["file"]

    @property
    def layer(self) -> int:
        return self.deformer.layer


# What readers rely on, with the type each value must have (the records' fields without a default): a manifest
# that is valid JSON of another shape is refused here, once, instead of failing later with a KeyError.
_TYPES = {"int": (int,), "str": (str,), "bool": (bool,)}
REQUIRED = {section: {item.name: _TYPES[item.type if isinstance(item.type, str) else item.type.__name__]
                      for item in fields(record) if item.default is MISSING}
            for section, record in (("model", ModelInfo), ("deformer", DeformerInfo))}


def _has_type(value, types) -> bool:
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def check_manifest_shape(manifest, manifest_path: Path) -> None:
    """Raise ManifestError unless `manifest` has every section, key and type readers use."""
    def refuse(what):
        raise ManifestError(f"{manifest_path} is not a deformer-export manifest: {what}", "re-export the graph set")

    if not isinstance(manifest, dict):
        refuse(f"expected a JSON object, found {type(manifest).__name__}")
    for section, keys in REQUIRED.items():
        if not isinstance(manifest.get(section), dict):
            refuse(f"'{section}' must be an object, found {manifest.get(section)!r}")
        for key, types in keys.items():
            if not _has_type(manifest[section].get(key), types):
                refuse(f"'{section}.{key}' must be {types[0].__name__}, found {manifest[section].get(key)!r}")
    if not isinstance(manifest.get("opset"), int) or not isinstance(manifest.get("validation"), dict):
        refuse("'opset' (an integer) and 'validation' (an object) are required")
    model, deformer = manifest["model"], manifest["deformer"]
    ranges = [
        (all(model[key] >= 1 for key in ("num_layers", "hidden_size", "intermediate_size", "vocab_size")),
         "model sizes must be at least 1"),
        (0 <= deformer["layer"] <= model["num_layers"], f"k={deformer['layer']} is outside 0..{model['num_layers']}"),
        (deformer["question_len"] >= 2 and deformer["passage_len"] >= 2, "lengths must be at least 2"),
        (deformer["passage_position_offset"] in ("zero", "question_len"), "unknown passage_position_offset"),
        (deformer["passage_first_position"] == (deformer["question_len"] if deformer["passage_position_offset"]
                                                 == "question_len" else 0), "passage_first_position does not follow "
                                                                             "from the offset"),
        (deformer["passage_token_type"] in (0, 1), "passage_token_type must be 0 or 1"),
    ]
    for holds, what in ranges:
        if not holds:
            refuse(what)
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict):
        refuse(f"'graphs' must be an object, found {graphs!r}")
    for name, spec in GRAPHS.items():
        entry = graphs.get(name)
        if entry is None:
            raise ManifestError(f"{manifest_path} does not list the {name} graph", "re-export the graph set")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            refuse(f"graph '{name}' needs a 'sha256'")
        if entry.get("file") != spec.file_name:  # a fixed name: never a path that leaves the directory
            refuse(f"graph '{name}' must be the file {spec.file_name!r}, found {entry.get('file')!r}")


def _check_graph_files(directory: Path, graphs: dict) -> None:
    for name in GRAPHS:
        path = directory / graphs[name]["file"]
        if not path.is_file():
            raise ManifestError(f"graph {path} named by the manifest is missing", "re-export the graph set")
        if file_sha256(path) != graphs[name]["sha256"]:
            raise ManifestError(
                f"graph {path} does not match its manifest (sha256 differs): it changed after export",
                "re-export the graph set instead of editing its files",
            )


def check_variants_shape(manifest: dict, manifest_path: Path) -> None:
    variants = manifest.get("variants", {})
    if not isinstance(variants, dict) or not all(name in VARIANTS and isinstance(entry, dict)
                                                 and isinstance(entry.get("graphs"), dict)
                                                 for name, entry in variants.items()):
        raise ManifestError(f"{manifest_path} lists variants of an unknown shape", "re-export the graph set")
    for name, entry in variants.items():
        for graph, spec in GRAPHS.items():
            listed = entry["graphs"].get(graph)
            if not isinstance(listed, dict) or listed.get("file") not in (spec.file_name, spec.ort_file_name) \
                    or not isinstance(listed.get("sha256"), str):
                raise ManifestError(f"{manifest_path}: variant {name} does not list its {graph} graph",
                                    "re-export the graph set")


def read_manifest(directory: Path) -> dict:
    """A graph set's manifest.json, of a known version and checked whole for shape (not the graphs' hashes)."""
    manifest_path = directory / MANIFEST_FILE
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise ManifestError(f"graph set {directory} {what}", "give a directory written by deformer-export")
    if not manifest_path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST_FILE}", "give a directory written by deformer-export")
    manifest = read_json(manifest_path, "graph set manifest", ManifestError, "re-export the graph set")
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != MANIFEST_FORMAT_VERSION:
        raise ManifestError(
            f"{manifest_path} has format_version {version!r}; this version reads {MANIFEST_FORMAT_VERSION}",
            "re-export the graph set with this version of deformer-export",
        )
    check_manifest_shape(manifest, manifest_path)
    check_variants_shape(manifest, manifest_path)
    return manifest


def graph_set_entries(directory) -> set:
    """Every path (relative, POSIX) a graph set's manifest makes its own: the manifest, its graphs, and under
    variants/ each listed variant's folder, graphs and (ort) operator config. Raises ManifestError when the
    manifest is missing, of another version or shape, or not deformer-export's."""
    manifest = read_manifest(Path(directory))
    tool = manifest.get("tool")
    if not isinstance(tool, dict) or tool.get("name") != "deformer-bench":
        raise ManifestError(f"{Path(directory) / MANIFEST_FILE} was not written by deformer-export",
                            "give a directory written by deformer-export")
    entries = {MANIFEST_FILE, *(entry["file"] for entry in manifest["graphs"].values())}
    variants = manifest.get("variants", {})
    if variants:
        entries.add(VARIANTS_DIR)
    for name, entry in variants.items():
        folder = f"{VARIANTS_DIR}/{name}"
        entries |= {folder, *(f"{folder}/{graph['file']}" for graph in entry["graphs"].values())}
        if name == "ort":
            entries |= {f"{folder}/{extra}" for extra in ORT_EXTRA_FILES}
    return entries


def load_graph_set(directory, variant: str = None) -> GraphSet:
    """Read manifest.json and check its shape, and that every graph it names is there with the recorded hash;
    with `variant` (VARIANTS; exporters/variants.py makes them), that variant's graphs instead ("float32": the exported ones)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if variant in (None, "float32"):
        _check_graph_files(directory, manifest["graphs"])
        return GraphSet(directory, manifest)
    if variant not in manifest.get("variants", {}):
        held = ", ".join(["float32", *manifest.get("variants", {})])
        raise ManifestError(f"graph set {directory} has no {variant} variant (it holds: {held})",
                            f"export it with the variant (deformer-export --help), or pick one of: {held}")
    if made_from_mask_length_attention(manifest["variants"], variant):
        raise ManifestError(f"the {variant} variant of {directory} comes from optimized graphs whose fused attention "
                            "reads each attention mask as one length (deformer-export before raw masks): its "
                            "answers are wrong whenever a question is shorter than its padded length",
                            "re-export the graph set (deformer-export --optimize now keeps the masks as they are)")
    entry = manifest["variants"][variant]
    variant_dir = directory / VARIANTS_DIR / variant
    _check_graph_files(variant_dir, entry["graphs"])
    return GraphSet(variant_dir, {**manifest, "graphs": entry["graphs"], "variant": variant,
                                  "validation": entry["validation"]})


# The optimized recipe before raw masks: its fused attention read [question; passage] padding as one length.
MASK_LENGTH_RECIPE = "onnxruntime.transformers.optimizer.optimize_model(model_type='bert', opt_level=0)"


def made_from_mask_length_attention(variants: dict, name: str) -> bool:
    """True when the variant, or a parent it was made from, is an optimized graph set of the old recipe."""
    seen = set()
    while name in variants and name not in seen:
        seen.add(name)
        if variants[name].get("recipe") == MASK_LENGTH_RECIPE:
            return True
        name = variants[name].get("parent")
    return False
