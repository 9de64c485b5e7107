"""Optimized, int8 and float16 variants of a graph set: made with onnxruntime's tools, validated against the
float32 graphs, listed in the manifest, read back by name and measured beside the float32 unsplit model."""

import json
import shutil
import subprocess
import sys

import pytest

from deformer_bench.errors import ManifestError
from exporters.manifest import load_graph_set
from exporters.variants import TOLERANCES, fusion_problems


@pytest.fixture(scope="module")
def variant_graphs(tmp_path_factory, tiny_model_dir):
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    out = tmp_path_factory.mktemp("variants") / "tiny-k1"
    export_graph_set(deformer, out, progress=False, variants=["ort", "float16", "int8", "optimized"])
    return out


def test_each_variant_is_made_validated_and_listed(variant_graphs):
    manifest = json.loads((variant_graphs / "manifest.json").read_text())
    variants = manifest["variants"]
    assert list(variants) == ["optimized", "int8", "float16", "ort"]  # optimized first: the others are made from it
    assert variants["optimized"]["parent"] == "float32"
    assert variants["int8"]["parent"] == variants["float16"]["parent"] == "optimized"
    assert variants["ort"]["parent"] == "int8"  # the last CPU variant made
    for name, entry in variants.items():
        validation = entry["validation"]
        tolerance = TOLERANCES[entry["parent"] if name == "ort" else name]
        assert validation["against"] == "float32" and validation["tolerance"] == tolerance
        assert 0 <= max(validation["worst_max_abs_diff"].values()) <= tolerance
        assert [(case["batch"], case["question_len"], case["passage_len"]) for case in validation["cases"]] == [
            (1, 8, 24), (2, 2, 6)]
        suffix = ".ort" if name == "ort" else ".onnx"
        expected = [f"{graph}{suffix}" for graph in ("full", "lower_passage", "lower_question", "upper")]
        if name == "ort":  # what a reduced onnxruntime build for a phone needs
            expected = sorted(expected + ["required_operators.config"])
        assert sorted(path.name for path in (variant_graphs / "variants" / name).iterdir()) == expected
    assert max(variants["optimized"]["validation"]["worst_max_abs_diff"].values()) < 1e-5


def test_attention_is_fused_once_per_layer_in_every_graph_the_upper_one_included(variant_graphs):
    entry = json.loads((variant_graphs / "manifest.json").read_text())["variants"]["optimized"]
    fused = entry["fused_operators"]
    # k=1 of 2 layers: one layer in each lower graph and in upper, two in full
    assert {graph: counts["Attention"] for graph, counts in fused.items()} == {
        "lower_question": 1, "lower_passage": 1, "upper": 1, "full": 2}
    assert entry["fusion_problems"] == []
    assert fusion_problems({"upper": {"Attention": 0}}, 1, 2) == ["upper: 0 fused Attention for 1 layers"]


def test_a_variant_is_read_back_by_name_and_checked(variant_graphs, tmp_path):
    graph_set = load_graph_set(variant_graphs, "int8")
    assert graph_set.variant == "int8" and graph_set.directory == variant_graphs / "variants" / "int8"
    assert graph_set.path("upper") == variant_graphs / "variants" / "int8" / "upper.onnx"
    assert load_graph_set(variant_graphs).variant == "float32"
    with pytest.raises(ManifestError, match=r"has no int8-arm64 variant \(it holds: float32, optimized, int8, float16, ort\)"):
        load_graph_set(variant_graphs, "int8-arm64")
    copy = tmp_path / "copy"
    shutil.copytree(variant_graphs, copy)
    with open(copy / "variants" / "int8" / "upper.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="does not match its manifest"):
        load_graph_set(copy, "int8")
    load_graph_set(copy, "optimized")  # the other variants are still whole


def test_the_optimized_graphs_honour_a_question_padded_in_the_middle(variant_graphs):
    """[question; passage] with a short question has padding between the two: a fused attention that reads the mask
    as one length per row (onnxruntime's bert default) attends to the wrong tokens there."""
    import numpy as np

    from deformer_bench.bench.parity import reference_outputs
    from deformer_bench.bench.runner import make_inputs
    from exporters.variants import pad_last_row

    inputs = make_inputs({"seed": 2, "batch_size": 2, "question_len": 8, "passage_len": 24, "vocab_size": 120,
                          "passage_token_type": 1})
    pad_last_row(inputs)
    assert inputs["attention_mask"][-1].tolist() == [1] * 4 + [0] * 4 + [1] * 8 + [0] * 16
    float32 = reference_outputs(variant_graphs, inputs)
    optimized = reference_outputs(variant_graphs / "variants" / "optimized", inputs)
    for output in ("unsplit_start_logits", "online_end_logits"):
        assert np.max(np.abs(float32[output] - optimized[output])) < 1e-4, output


def test_variants_of_optimized_graphs_made_before_raw_masks_are_refused(variant_graphs, tmp_path):
    from exporters.variants import MASK_LENGTH_RECIPE

    copy = tmp_path / "old"
    shutil.copytree(variant_graphs, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["variants"]["optimized"]["recipe"] = MASK_LENGTH_RECIPE
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for name in ("optimized", "int8", "float16", "ort"):  # made from optimized, directly or through int8
        with pytest.raises(ManifestError, match=f"the {name} variant .* reads each attention mask as one length"):
            load_graph_set(copy, name)
    assert load_graph_set(copy).variant == "float32"  # the exported graphs are not touched by it


def test_the_ort_format_variant_loads_and_matches_its_parent(variant_graphs):
    from deformer_bench.bench.parity import compare, reference_outputs
    from deformer_bench.bench.runner import make_inputs

    graph_set = load_graph_set(variant_graphs, "ort")
    assert graph_set.path("upper").name == "upper.ort"
    inputs = make_inputs({"seed": 1, "batch_size": 1, "question_len": 8, "passage_len": 24, "vocab_size": 120,
                          "passage_token_type": 1})
    parent = reference_outputs(variant_graphs / "variants" / "int8", inputs)
    assert compare(reference_outputs(graph_set.directory, inputs), parent, 1e-5)["passed"]


def test_overwrite_replaces_a_graph_set_with_variants(variant_graphs, tmp_path, tiny_model_dir):
    from exporters.onnx_export import check_destination

    copy = tmp_path / "copy"
    shutil.copytree(variant_graphs, copy)
    check_destination(copy, tiny_model_dir, overwrite=True)  # our variants/ folder is ours to replace


def bench(*args):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.bench", *map(str, args)],
                               capture_output=True, text=True, timeout=600)
    return completed.returncode, completed.stdout, completed.stderr


def test_variants_are_timed_beside_the_float32_unsplit_model(variant_graphs, tmp_path):
    code, out, err = bench("--graphs", variant_graphs, "--variant", "float32,int8", "--quick", "--quiet",
                           "--output", tmp_path)
    assert code == 0, err
    [directory] = list(tmp_path.iterdir())
    results = json.loads((directory / "results.json").read_text())
    plain, int8 = results["configs"]
    assert (plain["label"], plain["variant"], int8["label"], int8["variant"]) == (
        "tiny-k1", "float32", "tiny-k1 [int8]", "int8")
    [batch] = int8["batches"]
    assert set(batch["latency"]) == {"unsplit", "online", "online_served", "online_miss", "passage_precompute",
                                     "unsplit_float32"}
    assert batch["speedup_vs_float32_unsplit"]["online"]["ratio"] > 0
    assert "unsplit_float32" not in batch["speedup_vs_unsplit"]  # int8 online is compared with int8 unsplit
    assert "unsplit_float32" not in plain["batches"][0]["latency"]
    assert int8["operator_bytes"]["graphs"] == "float32"
    assert "speedup_vs_float32_unsplit" in (directory / "report.md").read_text()


@pytest.mark.parametrize("variant, message", [("int9", "is not a list of distinct variants"),
                                              ("int8,int8", "is not a list of distinct variants"),
                                              ("int8-arm64", "has no int8-arm64 variant")])
def test_a_variant_that_is_not_there_is_refused(variant_graphs, tmp_path, variant, message):
    code, _, err = bench("--graphs", variant_graphs, "--variant", variant, "--quick", "--output", tmp_path / "r")
    assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "r").exists()


def test_int8_straight_from_the_exported_graphs_and_nothing_left_in_the_working_directory(
        tmp_path, tiny_model_dir, monkeypatch):
    """Without --optimize, int8 is made from the exported float32 graphs, whose full graph onnxruntime's symbolic
    shape inference cannot finish (it then drops sym_shape_infer_temp.onnx into the working directory)."""
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    export_graph_set(deformer, tmp_path / "out", progress=False, variants=["int8"])
    int8 = load_graph_set(tmp_path / "out", "int8")
    assert int8.manifest["variant"] == "int8" and int8.manifest["variants"]["int8"]["parent"] == "float32"
    assert list(workdir.iterdir()) == []
    assert sorted(path.name for path in int8.directory.iterdir()) == sorted(
        ["full.onnx", "lower_question.onnx", "lower_passage.onnx", "upper.onnx"])


@pytest.mark.parametrize("layer", [0, 2])
def test_variants_of_the_unsplit_and_the_all_split_model_keep_every_contract_input(tmp_path, tiny_model_dir, layer):
    """At k=0 the lower graphs ignore their masks, at k=L the upper graph ignores both: the optimizer prunes such
    inputs, and every variant must still take all of them (a k=0 teacher's optimized export failed on this)."""
    import onnx

    from deformer_bench.model import Deformer
    from deformer_bench.runtime.contract import GRAPHS
    from exporters.onnx_export import export_graph_set

    deformer = Deformer.from_pretrained(tiny_model_dir, layer=layer, question_len=8, passage_len=24)
    export_graph_set(deformer, tmp_path / "out", progress=False, variants=["optimized", "int8"])
    for variant in ("optimized", "int8"):
        graph_set = load_graph_set(tmp_path / "out", variant)
        for graph, spec in GRAPHS.items():
            inputs = [graph_input.name for graph_input in onnx.load(str(graph_set.path(graph))).graph.input]
            assert inputs == list(spec.inputs), (variant, graph)


def tree(root):
    return sorted((str(path.relative_to(root)), path.is_symlink() or path.is_dir() or path.read_bytes())
                  for path in root.rglob("*"))


@pytest.mark.parametrize("added, named", [
    ("variants/int8/mycache/cache.json", "variants/int8/mycache"),  # issue 22, finding 2: a cache in a variant
    ("variants/ort/mynotes.txt", "variants/ort/mynotes.txt"),
    ("variants/extra/", "variants/extra"),  # a folder of the user's beside the variants
    ("variants/int8/upper.onnx.bak", "variants/int8/upper.onnx.bak"),
    (".build.lock", ".build.lock"),  # hidden files count too
    ("variants/float16/.keep", "variants/float16/.keep"),
])
def test_overwrite_refuses_anything_the_manifest_does_not_list_at_any_depth(variant_graphs, tmp_path,
                                                                             tiny_model_dir, added, named):
    """--overwrite removes exactly what the manifest lists; anything else, at any depth, stops it before anything
    is removed, and the first such path is named (exit 2)."""
    from deformer_bench.errors import OutputLocationError
    from exporters.onnx_export import check_destination

    copy = tmp_path / "copy"
    shutil.copytree(variant_graphs, copy)
    (copy / added).parent.mkdir(parents=True, exist_ok=True)
    if added.endswith("/"):
        (copy / added).mkdir()
    else:
        (copy / added).write_text("mine")
    before = tree(copy)
    with pytest.raises(OutputLocationError, match=f"would delete {copy / named}, which is not part of the graph set"):
        check_destination(copy, tiny_model_dir, overwrite=True)
    assert tree(copy) == before


def test_overwrite_refuses_links_and_variants_the_manifest_does_not_list(variant_graphs, tmp_path, tiny_model_dir):
    from deformer_bench.errors import OutputLocationError
    from exporters.onnx_export import check_destination

    copy = tmp_path / "copy"
    shutil.copytree(variant_graphs, copy)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.txt").write_text("mine")
    (copy / "variants" / "int8" / "upper.onnx").unlink()
    (copy / "variants" / "int8" / "upper.onnx").symlink_to(tmp_path / "mine" / "data.txt")  # a listed name, a link
    with pytest.raises(OutputLocationError, match="variants/int8/upper.onnx, which is not part"):
        check_destination(copy, tiny_model_dir, overwrite=True)
    shutil.rmtree(copy)
    shutil.copytree(variant_graphs, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["variants"]["float16"]  # its folder is no longer the graph set's
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputLocationError, match="variants/float16, which is not part"):
        check_destination(copy, tiny_model_dir, overwrite=True)
    manifest["variants"] = "broken"  # a manifest that does not say what is ours: nothing is
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputLocationError, match="not a graph set written by deformer-export"):
        check_destination(copy, tiny_model_dir, overwrite=True)
    assert (tmp_path / "mine" / "data.txt").read_text() == "mine"


def test_a_file_written_into_out_during_the_export_survives_the_swap(variant_graphs, tmp_path, tiny_model_dir,
                                                                      monkeypatch):
    """The swap checks the old OUT/ again once it is moved aside: a file that appeared in it since the first check
    (the export takes minutes) puts it back untouched, and the new graphs are dropped, not the user's file."""
    import exporters.onnx_export as onnx_export
    from deformer_bench.errors import OutputLocationError
    from deformer_bench.model import Deformer

    copy = tmp_path / "copy"
    shutil.copytree(variant_graphs, copy)
    validate = onnx_export.validate_graph_set

    def meanwhile(*args, **kwargs):
        (copy / "variants" / "int8" / "mycache").mkdir()
        (copy / "variants" / "int8" / "mycache" / "cache.json").write_text("{}")
        return validate(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "validate_graph_set", meanwhile)
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    before = tree(variant_graphs)
    with pytest.raises(OutputLocationError, match="appeared while"):
        onnx_export.export_graph_set(deformer, copy, overwrite=True, progress=False)
    assert (copy / "variants" / "int8" / "mycache" / "cache.json").read_text() == "{}"
    assert [entry for entry in tree(copy) if "mycache" not in entry[0]] == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy"]  # no staging or moved-aside leftovers


def test_overwrite_removes_exactly_the_listed_files(variant_graphs, tmp_path, tiny_model_dir):
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    copy = tmp_path / "copy"
    shutil.copytree(variant_graphs, copy)
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    export_graph_set(deformer, copy, overwrite=True, progress=False)  # no variants this time
    assert sorted(path.name for path in copy.iterdir()) == sorted(
        ["manifest.json", "lower_question.onnx", "lower_passage.onnx", "upper.onnx", "full.onnx"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy"]
