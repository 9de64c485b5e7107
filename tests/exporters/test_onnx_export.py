import json
import os
import re
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from deformer_bench.contracts.errors import ManifestError, OutputExistsError, OutputLocationError, ValidationError
from deformer_bench.model import Deformer, DeformerConfig
from deformer_bench.contracts.graphs import GRAPHS
from deformer_bench.exporters.graphs import example_inputs
from deformer_bench.contracts.manifest import MANIFEST_FILE, load_graph_set
from deformer_bench.exporters.onnx_export import export_graph_set
from deformer_bench.exporters.validate import validate_graph_set


def run_graph(directory, name, tensors):
    session = onnxruntime.InferenceSession(str(directory / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    feed = {key: np.asarray(tensors[key]) for key in GRAPHS[name].inputs}
    return session.run(list(GRAPHS[name].outputs), feed)


def test_graph_set_files_and_manifest(tiny_graphs, tiny_model_dir):
    assert sorted(p.name for p in tiny_graphs.iterdir()) == [
        "full.onnx", "lower_passage.onnx", "lower_question.onnx", "manifest.json", "upper.onnx"]
    manifest = json.loads((tiny_graphs / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == 1
    assert manifest["deformer"] == {"layer": 1, "question_len": 8, "passage_len": 24,
                                    "passage_position_offset": "question_len", "passage_first_position": 8,
                                    "passage_token_type": 1}
    assert manifest["model"]["fingerprint_sha256"] == Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8,
                                                                               passage_len=24).fingerprint()
    assert manifest["model"]["num_layers"] == 2 and manifest["model"]["hidden_size"] == 32
    validation = manifest["validation"]
    assert validation["worst_max_abs_diff"]["logits"] <= validation["tolerance"]["logits"] == 1e-4
    assert validation["worst_max_abs_diff"]["hidden"] <= validation["tolerance"]["hidden"] == 1e-3
    shapes = {(case["batch"], case["question_len"], case["passage_len"]) for case in manifest["validation"]["cases"]}
    assert {(1, 8, 24), (4, 8, 24)} <= shapes and len(shapes) >= 3
    for case in manifest["validation"]["cases"]:
        assert set(case["max_abs_diff"]) == {"lower_question", "lower_passage", "upper", "full", "pipeline"}


def test_graph_io_names_are_the_contract(tiny_graphs):
    for name, spec in GRAPHS.items():
        model = onnx.load(str(tiny_graphs / f"{name}.onnx"))
        assert [i.name for i in model.graph.input] == list(spec.inputs)
        assert [o.name for o in model.graph.output] == list(spec.outputs)


def test_split_pipeline_equals_pytorch_deformer_at_a_new_shape(tiny_graphs, tiny_model_dir):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    tensors = example_inputs(deformer, batch=3, question_len=6, passage_len=17, seed=7)
    question_hidden, = run_graph(tiny_graphs, "lower_question", tensors)
    passage_hidden, = run_graph(tiny_graphs, "lower_passage", tensors)
    start, end = run_graph(tiny_graphs, "upper", {**tensors, "question_hidden": question_hidden,
                                                  "passage_hidden": passage_hidden})
    with torch.no_grad():
        expected_start, expected_end = deformer(tensors["question_input_ids"], tensors["question_attention_mask"],
                                                tensors["passage_input_ids"], tensors["passage_attention_mask"])
    np.testing.assert_allclose(start, expected_start.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(end, expected_end.numpy(), atol=1e-4, rtol=0)
    full_start, _ = run_graph(tiny_graphs, "full", tensors)
    with torch.no_grad():
        unsplit_start, _ = deformer.unsplit(tensors["input_ids"], tensors["attention_mask"], tensors["token_type_ids"])
    np.testing.assert_allclose(full_start, unsplit_start.numpy(), atol=1e-4, rtol=0)


def tamper(path):
    """Negate the largest weight matrix of a graph (a constant shift would vanish after LayerNorm)."""
    model = onnx.load(str(path))
    initializer = max(model.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
    values = -onnx.numpy_helper.to_array(initializer)
    initializer.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), initializer.name))
    onnx.save(model, str(path))


@pytest.mark.parametrize("graph", ["upper", "lower_passage"])
def test_validation_rejects_a_tampered_graph(tiny_graphs, tiny_model_dir, tmp_path, graph):
    copy = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, copy)
    tamper(copy / f"{graph}.onnx")
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    with pytest.raises(ValidationError, match=graph):
        validate_graph_set(deformer, copy)


def test_manifest_detects_a_changed_graph(tiny_graphs, tmp_path):
    copy = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, copy)
    assert load_graph_set(copy).layer == 1
    tamper(copy / "upper.onnx")
    with pytest.raises(ManifestError, match="does not match its manifest"):
        load_graph_set(copy)
    (copy / "upper.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        load_graph_set(copy)


def test_manifest_of_unknown_version_is_refused(tiny_graphs, tmp_path):
    copy = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["format_version"] = 99
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="format_version 99"):
        load_graph_set(copy)


def test_existing_output_is_refused_unless_overwrite(tiny_model_dir, tiny_graphs, tmp_path):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=2, question_len=8, passage_len=24)
    out = tmp_path / "out"
    shutil.copytree(tiny_graphs, out)
    with pytest.raises(OutputExistsError):
        export_graph_set(deformer, out, progress=False)
    assert load_graph_set(out).layer == 1
    export_graph_set(deformer, out, overwrite=True, progress=False)
    assert load_graph_set(out).layer == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("what", ["a folder of the user's", "a file"])
def test_overwrite_replaces_only_graph_sets(tiny_model_dir, tmp_path, what):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    out = tmp_path / "out"
    if what == "a file":
        out.write_text("mine")
    else:
        out.mkdir()
        if what == "a folder of the user's":
            (out / "keep.txt").write_text("mine")
            (out / "manifest.json").write_text('{"tool": {"name": "something else"}}')
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    with pytest.raises(OutputLocationError, match="is a file" if what == "a file" else "only replaces graph sets"):
        export_graph_set(deformer, out, overwrite=True, progress=False)
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_a_manifest_of_another_shape_is_refused(tiny_graphs, tmp_path):
    copy = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, copy)
    original = json.loads((copy / MANIFEST_FILE).read_text())

    def with_manifest(manifest):
        (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
        return copy

    def changed(**sections):
        return {**original, **sections}

    cases = [
        ([], "format_version None"),
        (changed(deformer=None), "'deformer' must be an object, found None"),
        (changed(deformer={**original["deformer"], "layer": "1"}), "'deformer.layer' must be int"),
        (changed(model={**original["model"], "qa_head_trained": 1}), "'model.qa_head_trained' must be bool"),
        (changed(graphs={**original["graphs"], "upper": {"file": "upper.onnx"}}), "graph 'upper' needs a 'sha256'"),
        (changed(graphs={**original["graphs"], "upper": {**original["graphs"]["upper"], "file": "../upper.onnx"}}),
         "graph 'upper' must be the file 'upper.onnx'"),
        (changed(graphs=[]), "'graphs' must be an object"),
    ]
    for manifest, message in cases:
        with pytest.raises(ManifestError, match=re.escape(message)):
            load_graph_set(with_manifest(manifest))
    with pytest.raises(ManifestError, match="is not a directory"):
        load_graph_set(copy / MANIFEST_FILE)


def test_stale_staging_of_a_killed_export_is_cleaned_by_the_next(tiny_model_dir, tiny_graphs, tmp_path):
    """Process 999999999 does not exist: its staging copy goes; the old OUT/ it had moved aside comes back."""
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    staging = tmp_path / ".out.partial-999999999-abc123"
    staging.mkdir()
    (staging / "lower_question.onnx").write_bytes(b"half a graph")
    shutil.copytree(tiny_graphs, tmp_path / ".out.replaced-999999999")
    with pytest.raises(OutputExistsError):  # the restored OUT/ exists: refused without --overwrite
        export_graph_set(deformer, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and load_graph_set(tmp_path / "out").layer == 1
    live = tmp_path / f".other.partial-{os.getppid()}-x"  # a live writer's staging is left alone
    live.mkdir()
    export_graph_set(deformer, tmp_path / "other", progress=False)
    assert live.exists()


def test_opset_outside_the_exporters_range_is_refused(tiny_model_dir, tmp_path):
    from deformer_bench.contracts.errors import ConfigError

    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    with pytest.raises(ConfigError, match="opset 13 is outside"):
        export_graph_set(deformer, tmp_path / "out", opset=13, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_no_output(tiny_model_dir, tmp_path, monkeypatch):
    import deformer_bench.exporters.onnx_export as onnx_export

    def fail(*args, **kwargs):
        raise ValidationError("simulated failure")

    monkeypatch.setattr(onnx_export, "validate_graph_set", fail)
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    with pytest.raises(ValidationError):
        export_graph_set(deformer, tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("layer", [0, 2])
def test_every_graph_keeps_its_inputs_at_k0_and_kL(tiny_model_dir, tmp_path, layer):
    """At k=0 the lower graphs ignore their masks, at k=L the upper graph ignores both: names stay."""
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=layer, question_len=8, passage_len=24)
    export_graph_set(deformer, tmp_path / "out", progress=False)
    for name, spec in GRAPHS.items():
        model = onnx.load(str(tmp_path / "out" / f"{name}.onnx"))
        assert [i.name for i in model.graph.input] == list(spec.inputs)


@pytest.mark.parametrize("model_type", ["roberta", "electra"])
def test_other_families_export_and_validate(model_type, tmp_path):
    from tests.conftest import tiny_qa_model

    deformer = Deformer(tiny_qa_model(model_type), DeformerConfig(layer=1, question_len=8, passage_len=24))
    manifest = export_graph_set(deformer, tmp_path / model_type, progress=False)
    assert manifest["model"]["architecture"] == model_type
    assert all(diff <= 1e-3 for case in manifest["validation"]["cases"] for diff in case["max_abs_diff"].values())
    expected_type = 0 if model_type == "roberta" else 1  # RoBERTa has a single token type
    assert manifest["deformer"]["passage_token_type"] == expected_type


def test_overwrite_keeps_what_the_user_added_to_a_graph_set(tiny_model_dir, tiny_graphs, tmp_path):
    """An evaluation record or a passage cache kept inside a graph set is the user's: not deleted silently."""
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    out = tmp_path / "out"
    shutil.copytree(tiny_graphs, out)
    (out / "eval-onnx.json").write_text("{}")
    with pytest.raises(OutputLocationError, match="eval-onnx.json"):
        export_graph_set(deformer, out, overwrite=True, progress=False)
    assert (out / "eval-onnx.json").exists()


def test_overwrite_of_the_current_directory_is_refused(tiny_model_dir, tiny_graphs, tmp_path, monkeypatch):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    shutil.copytree(tiny_graphs, tmp_path / "g")
    monkeypatch.chdir(tmp_path / "g")
    with pytest.raises(OutputLocationError, match="the folder this command runs in"):
        export_graph_set(deformer, ".", overwrite=True, progress=False)
    assert load_graph_set(tmp_path / "g").layer == 1


def test_a_file_as_out_is_named_a_file(tiny_model_dir, tmp_path):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    (tmp_path / "p.jsonl").write_text("{}")
    with pytest.raises(OutputLocationError, match="is a file"):
        export_graph_set(deformer, tmp_path / "p.jsonl", progress=False)


@pytest.mark.parametrize("section, key, value, message", [
    ("model", "hidden_size", 0, "model sizes must be at least 1"),
    ("deformer", "layer", 7, "k=7 is outside 0..2"),
    ("deformer", "question_len", 1, "lengths must be at least 2"),
    ("deformer", "passage_first_position", 3, "passage_first_position does not follow"),
    ("deformer", "passage_token_type", 2, "passage_token_type must be 0 or 1"),
])
def test_manifest_values_out_of_range_are_refused(tiny_graphs, tmp_path, section, key, value, message):
    copy = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest[section][key] = value
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=message):
        load_graph_set(copy)


def test_the_graph_contract_imports_no_torch():
    """Code that only runs graphs (runner, serving) reads the contract and manifests without torch."""
    import subprocess
    import sys

    code = ("import sys; import deformer_bench.contracts.graphs, deformer_bench.exporters.manifest; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_every_input_has_an_element_type():
    assert GRAPHS["upper"].input_dtype("passage_hidden") == "float32"
    assert {GRAPHS[name].input_dtype(tensor) for name in ("full", "lower_question", "lower_passage")
            for tensor in GRAPHS[name].inputs} == {"int64"}
    with pytest.raises(KeyError):
        GRAPHS["full"].input_dtype("passage_hidden")


def test_overwrite_takes_an_empty_folder(tiny_model_dir, tmp_path):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    (tmp_path / "out").mkdir()
    export_graph_set(deformer, tmp_path / "out", overwrite=True, progress=False)
    assert load_graph_set(tmp_path / "out").layer == 1
    assert oct((tmp_path / "out").stat().st_mode & 0o777) != "0o700"  # not mkdtemp's private mode
