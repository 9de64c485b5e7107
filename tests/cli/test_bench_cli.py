import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from deformer_bench.report import write_report


def cli(*args, timeout=600):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.bench", *map(str, args)],
                               capture_output=True, text=True, timeout=timeout)
    return completed.returncode, completed.stdout, completed.stderr


@pytest.fixture(scope="module")
def quick_run(tiny_model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("results")
    code, out, err = cli("--model", tiny_model_dir, "--layer", "1,2", "--question-len", "8", "--passage-len", "24",
                         "--quick", "--output", output, "--quiet")
    assert code == 0, err
    [directory] = list(output.iterdir())
    return directory, out


def test_quick_bench_writes_json_csv_plots_and_report(quick_run):
    directory, out = quick_run
    assert f"results: {directory}/report.md" in out
    names = {path.name for path in directory.iterdir()}
    assert {"results.json", "results.csv", "report.md", "latency_by_path.png", "speedup_vs_ideal.png",
            "peak_memory.png", "throughput_vs_batch.png"} <= names
    results = json.loads((directory / "results.json").read_text())
    assert results["format_version"] == 1
    environment = results["environment"]
    assert environment["packages"]["onnxruntime"] and environment["cpu"]["logical_cores"] >= 1
    assert environment["command"].startswith("deformer-bench --model")
    assert results["profile"]["name"] == "server-cpu+quick"
    assert [config["deformer"]["layer"] for config in results["configs"]] == [1, 2]
    batch = results["configs"][0]["batches"][0]
    assert set(batch["samples_ns"]) == {"unsplit", "online", "passage_precompute"}
    assert len(batch["samples_ns"]["unsplit"]) >= 3
    assert batch["speedup_vs_unsplit"]["online"]["ci95_low"] <= batch["speedup_vs_unsplit"]["online"]["ratio"]
    assert batch["memory"]["unsplit"]["peak_rss_mb"] > 0
    frame = pd.read_csv(directory / "results.csv")
    assert len(frame) == 2 * 3  # two k, one batch size, three paths
    report = (directory / "report.md").read_text()
    assert "speedup_vs_ideal.png" in report and environment["command"] in report


def test_report_is_redrawn_from_saved_results_only(quick_run, tmp_path):
    directory, _ = quick_run
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(directory / "results.json", copy)
    write_report(copy)
    assert (copy / "report.md").read_text() == (directory / "report.md").read_text()


def test_bench_an_exported_graph_set(tiny_graphs, tmp_path):
    code, out, err = cli("--graphs", tiny_graphs, "--quick", "--output", tmp_path, "--quiet")
    assert code == 0, err
    [directory] = list(tmp_path.iterdir())
    assert json.loads((directory / "results.json").read_text())["configs"][0]["deformer"]["layer"] == 1


def test_a_second_run_never_overwrites_the_first(quick_run, tiny_graphs):
    directory, _ = quick_run
    code, out, err = cli("--graphs", tiny_graphs, "--quick", "--output", directory.parent, "--quiet")
    assert code == 0, err
    assert directory.exists() and len(list(directory.parent.iterdir())) == 2


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda"], "'cuda' cannot be benchmarked"),
    (["--profile", "laptop"], "unknown profile 'laptop'"),
    (["--profile", "{profile_for_cuda}"], "tuned for device 'cuda', not 'cpu'"),
    (["--layer", "7"], "outside 0..2"),
    (["--layer", "x"], "comma-separated integers"),
    (["--passage-len", "200"], "position table has 96"),
])
def test_bad_input_exits_2(tiny_model_dir, tmp_path, args, message):
    profile_for_cuda = tmp_path / "gpu.yaml"
    profile_for_cuda.write_text("name: gpu\ndescription: d\ndevice: cuda\nintra_op_threads: 1\nbatch_sizes: [1]\n")
    args = [arg.format(profile_for_cuda=profile_for_cuda) for arg in args]
    code, _, stderr = cli("--model", tiny_model_dir, "--question-len", "8", "--quick", "--output", tmp_path / "r",
                          *args)
    assert code == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "r").exists()


def test_a_changed_graph_set_is_refused(tiny_graphs, tmp_path):
    copy = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, copy)
    with open(copy / "upper.onnx", "ab") as handle:
        handle.write(b"\0")
    code, _, stderr = cli("--graphs", copy, "--quick", "--output", tmp_path / "r")
    assert code == 2 and "does not match its manifest" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "r").exists()
