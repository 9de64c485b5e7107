import json

import pytest

from deformer_bench.cli.analysis.variant_accuracy import variant_accuracy_main
from deformer_bench.cli.common import run_cli


def record(model, variant, f1, layer=3, fingerprint="a" * 64, dataset="dev-v1.1.json.gz", limit=None,
           parent="float32"):
    return {"f1": f1, "exact_match": f1 - 10, "questions": 10570, "windows": 10833, "doc_stride": 128,
            "dataset": f"../shared/data/squad/{dataset}", "limit": limit, "model_dir": f"reference/{model}/model",
            "model_fingerprint_sha256": fingerprint, "deformer": {"layer": layer},
            "graph_set": {"dir": "x", "variant": variant,
                          "manifest": {"variants": {} if variant == "float32" else {variant: {"parent": parent}}}},
            "environment": {"git": {"commit": "0123456789abcdef", "dirty": False}, "cpu": {"model": "AMD EPYC"},
                            "packages": {"onnxruntime": "1.23.2"}, "command": f"deformer-eval --variant {variant}"}}


def write(directory, records):
    directory.mkdir(exist_ok=True)
    for index, content in enumerate(records):
        (directory / f"{index}.json").write_text(json.dumps(content))
    return directory


def test_changes_are_against_the_same_models_float32(tmp_path, capsys):
    records = write(tmp_path / "records", [record("k3-kd-lrs", "int8", 73.5, parent="optimized"), record("k3-kd-lrs", "float32", 74.0),
                                           record("teacher", "float32", 76.6, layer=0, fingerprint="b" * 64),
                                           record("teacher", "int8", 76.0, layer=0, fingerprint="b" * 64),
                                           record("k3-kd-lrs", "optimized", 74.0)])
    assert variant_accuracy_main([str(records), "--out", str(tmp_path / "out")]) == 0
    lines = (tmp_path / "out" / "accuracy.md").read_text().splitlines()
    assert lines[0].startswith("| model | k | variant | made from | F1 |")
    assert lines[2].startswith("| teacher | 0 | float32 | - | 76.60 |") and lines[3].endswith("| -0.60 | 10,570 |")
    assert lines[4].startswith("| k3-kd-lrs | 3 | float32 | - | 74.00 |")
    assert "| optimized | float32 | 74.00 | 64.00 | +0.00 |" in lines[5]
    assert "| int8 | optimized | 73.50 | 63.50 | -0.50 |" in lines[6]
    assert "AMD EPYC" in capsys.readouterr().out
    assert (tmp_path / "out" / "accuracy.csv").read_text().count("\n") == 6


@pytest.mark.parametrize("records, message", [
    ([record("m", "float32", 70), record("m", "int8", 69, fingerprint="c" * 64)], "2 different weights"),
    ([record("m", "float32", 70), record("m", "int8", 69, limit=100)], "different question sets"),
    ([record("m", "float32", 70), record("m", "float32", 70.5)], "both score m's float32 graphs"),
    ([{"f1": 1}], "is not a deformer-eval --onnx --output record"),
    ([], "holds no *.json records"),
])
def test_records_that_do_not_compare_are_refused(tmp_path, records, message, capsys):
    records_dir = write(tmp_path / "records", records)
    assert run_cli(variant_accuracy_main, [str(records_dir)]) == 2
    assert message in capsys.readouterr().err and not (records_dir / "accuracy.md").exists()


def test_a_model_without_float32_has_no_change_and_a_record_outside_git_is_read(tmp_path):
    outside_git = record("k3", "int8", 73.0)
    outside_git["environment"]["git"]["commit"] = None
    records = write(tmp_path / "records", [outside_git, record("t", "float32", 76.0, layer=0, fingerprint="b" * 64)])
    assert variant_accuracy_main([str(records)]) == 0
    text = (records / "accuracy.md").read_text()
    assert "| k3 | 3 | int8 | float32 | 73.00 | 63.00 | - |" in text and "nan" not in text and "no git" in text


def test_a_kept_record_must_score_the_graphs_there_now(tmp_path, tiny_model_dir, capsys):
    from deformer_bench.model import Deformer
    from deformer_bench.exporters.onnx_export import export_graph_set

    graphs = tmp_path / "graphs"
    manifest = export_graph_set(Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24),
                                graphs, progress=False)
    kept = record("tiny", "float32", 70.0)
    kept["graph_set"]["manifest"] = manifest
    path = tmp_path / "tiny-float32.json"
    path.write_text(json.dumps(kept))
    assert variant_accuracy_main(["--is-current", str(path), str(graphs), "float32"]) == 0
    assert variant_accuracy_main(["--is-current", str(tmp_path / "none.json"), str(graphs), "float32"]) == 1
    manifest["graphs"]["upper"]["sha256"] = "0" * 64  # the record scored other graphs
    path.write_text(json.dumps(kept))
    assert run_cli(variant_accuracy_main, ["--is-current", str(path), str(graphs), "float32"]) == 2
    assert "scores other float32 graphs than" in capsys.readouterr().err
