import json
import shutil
import subprocess
import sys

from pathlib import Path

import pandas as pd
import pytest

from deformer_bench.bench.targets import Target

from deformer_bench.cli.bench import bench_main
from deformer_bench.cli.common import run_cli
from deformer_bench.report import write_report


def cli(*args, timeout=600):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.bench", *map(str, args)],
                               capture_output=True, text=True, timeout=timeout)
    return completed.returncode, completed.stdout, completed.stderr


@pytest.fixture(scope="module")
def quick_run(tiny_model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("results")
    code, out, err = cli("--model", tiny_model_dir, "--layer", "1,2", "--question-len", "8", "--passage-len", "24",
                         "--quick", "--processes", "2", "--output", output, "--quiet")
    assert code == 0, err
    [directory] = list(output.iterdir())
    return directory, out


def test_quick_bench_writes_json_csv_plots_and_report(quick_run):
    directory, out = quick_run
    assert f"results: {directory}/report.md" in out
    names = {path.name for path in directory.iterdir()}
    assert {"results.json", "results.csv", "processes.csv", "report.md", "latency_by_path.png",
            "speedup_vs_ideal.png", "peak_memory.png", "throughput_vs_batch.png"} <= names
    results = json.loads((directory / "results.json").read_text())
    assert results["format_version"] == 3 and results["timing_processes"] == 2
    environment = results["environment"]
    assert environment["packages"]["onnxruntime"] and environment["cpu"]["logical_cores"] >= 1
    assert environment["command"].startswith("deformer-bench --model")
    assert results["profile"]["name"] == "server-cpu+quick"
    assert [config["deformer"]["layer"] for config in results["configs"]] == [1, 2]
    batch = results["configs"][0]["batches"][0]
    first, second = batch["processes"]  # two fresh timing processes, each with its own raw samples
    assert first["pid"] != second["pid"]
    for process in (first, second):
        assert set(process["samples_ns"]) == {"unsplit", "online", "online_served", "online_miss", "passage_precompute"}
        assert len(process["samples_ns"]["unsplit"]) >= 3
    assert batch["latency"]["unsplit"]["count"] == sum(len(p["samples_ns"]["unsplit"]) for p in (first, second))
    assert batch["speedup_vs_unsplit"]["online"]["ci95_low"] <= batch["speedup_vs_unsplit"]["online"]["ratio"]
    online = batch["across_processes"]["speedup_vs_unsplit"]["online"]
    assert online["values"] == [first["speedup_vs_unsplit"]["online"], second["speedup_vs_unsplit"]["online"]]
    assert batch["memory"]["unsplit"]["peak_rss_mb"] > 0
    state = results["machine_state"]
    assert len(state["at_start"]["load_average"]) == 3 and "busy_processes" in state["at_end"]
    assert results["headline"]["ok"] is False  # --quick, two processes
    frame = pd.read_csv(directory / "results.csv")
    assert len(frame) == 2 * 5  # two k, one batch size, five paths
    assert frame.loc[frame["path"] == "online_served", "peak_rss_mb"].isna().all()  # online's memory, not its own
    assert (frame["processes"] == 2).all()
    assert len(pd.read_csv(directory / "processes.csv")) == 2 * 2 * 5  # two k, two processes, five paths
    assert "served_speedup" in report_table_header(directory) and "miss_speedup" in report_table_header(directory)
    assert frame.loc[frame["path"] == "online_miss", "peak_rss_mb"].notna().all()  # its graphs, loaded alone
    report = (directory / "report.md").read_text()
    assert "speedup_vs_ideal.png" in report and environment["command"] in report
    assert "### Per timing process" in report and "## Machine state" in report


def report_table_header(directory) -> str:
    report = (directory / "report.md").read_text()
    return next(line for line in report.splitlines() if line.startswith("| model | device | layer"))


def test_report_is_redrawn_from_saved_results_only(quick_run, tmp_path):
    directory, _ = quick_run
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(directory / "results.json", copy)
    write_report(copy)
    assert (copy / "report.md").read_text() == (directory / "report.md").read_text()


def test_a_format_1_results_file_still_gets_its_report(quick_run, tmp_path):
    """Before format 2: one timing process, its samples at the top of each batch, no machine state."""
    directory, _ = quick_run
    results = json.loads((directory / "results.json").read_text())
    results["format_version"] = 1
    for key in ("timing_processes", "machine_state", "headline"):
        del results[key]
    for config in results["configs"]:
        for batch in config["batches"]:
            first = batch.pop("processes")[0]
            batch.pop("across_processes")
            batch["samples_ns"], batch["load_s"] = first["samples_ns"], first["load_s"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps(results))
    write_report(old)
    report = (old / "report.md").read_text()
    assert "results format 1" in report and "Not recorded (results format 1)" in report
    assert (pd.read_csv(old / "results.csv")["processes"] == 1).all()


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
    (["--profile", "laptop"], "unknown profile 'laptop'"),
    (["--profile", "{profile_for_cuda}"], "profile 'gpu' is for device 'cuda', which --device cpu does not measure"),
    (["--profile", "server-cpu,server-cpu-1thread"], "are both for device 'cpu'"),
    (["--device", "arm", "--target", "pi@board"], "is not an ssh address"),
    (["--target", "ssh://pi@board"], "--target names the ARM machine to measure"),
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


def in_process(argv, capsys) -> tuple:
    """(exit code, stderr) of deformer-bench run here: argparse's own errors exit through SystemExit."""
    try:
        code = run_cli(bench_main, [str(arg) for arg in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", ""], "--batch-sizes is empty"),
    (["--batch-sizes", "0"], "--batch-sizes must be at least 1, got '0'"),
    (["--batch-sizes", "1,-4"], "--batch-sizes must be at least 1"),
    (["--layer", ""], "--layer is empty"),
    (["--layer", "-1"], "--layer must be at least 0"),
    (["--question-len", "0"], "argument --question-len: must be at least 1, got 0"),
    (["--passage-len", "0"], "argument --passage-len: must be at least 1, got 0"),
    (["--processes", "0"], "argument --processes: must be at least 1, got 0"),
    # issue 22, finding 14: accepted, it ran until killed
    (["--processes", "99999999999999999999"], "argument --processes: must be at most 100, got 99,999,999,999,999,"),
    (["--processes", "101"], "argument --processes: must be at most 100, got 101"),
    (["--device", "cpu,cpu"], "device 'cpu' given more than once"),
])
def test_a_bad_option_is_blamed_on_the_option_before_any_work(tiny_model_dir, tmp_path, capsys, monkeypatch, args,
                                                               message):
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    code, stderr = in_process(["--model", tiny_model_dir, "--quick", "--output", tmp_path / "r", *args], capsys)
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert "profile 'server-cpu'" not in stderr  # the option is at fault, not the profile it overrides
    assert not (tmp_path / "r").exists()


def _must_not_run(*args, **kwargs):
    raise AssertionError("slow work started before the settings were checked")


def _read_only_location():
    if not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    return Path("/sys") / "deformer-bench-results"


@pytest.mark.parametrize("where, message", [
    ("file", "is a file"),
    ("under-file", "has a file in the way"),
    ("read-only", "cannot write in /sys"),
])
def test_an_unwritable_output_is_refused_before_any_export_or_measurement(tiny_model_dir, tmp_path, capsys,
                                                                          monkeypatch, where, message):
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    monkeypatch.setattr("deformer_bench.api.benchmarking.run_benchmark", _must_not_run)
    (tmp_path / "a-file").write_text("")
    output = {"file": tmp_path / "a-file", "under-file": tmp_path / "a-file" / "results",
              "read-only": _read_only_location()}[where]
    code, stderr = in_process(["--model", tiny_model_dir, "--quick", "--output", output], capsys)
    assert code == 2 and f"error: --output {output}" in stderr and message in stderr
    assert "fix:" in stderr and "Traceback" not in stderr
    assert (tmp_path / "a-file").read_text() == ""


@pytest.mark.parametrize("where", ["inside the model", "the model itself", "inside a graph set"])
def test_the_results_root_may_not_lie_inside_an_input(tiny_model_dir, tiny_graphs, tmp_path, capsys, monkeypatch,
                                                      where):
    """Issue 22, finding 1: the results go to a new folder under --output, which may hold the graph sets (results/
    often does) but may not be, or lie inside, what the run reads."""
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    monkeypatch.setattr("deformer_bench.api.benchmarking.run_benchmark", _must_not_run)
    source = ["--graphs", tiny_graphs] if where == "inside a graph set" else ["--model", tiny_model_dir]
    output = {"inside the model": tiny_model_dir / "results", "the model itself": tiny_model_dir,
              "inside a graph set": tiny_graphs / "results"}[where]
    code, stderr = in_process([*source, "--quick", "--output", output], capsys)
    assert code == 2 and f"error: --output {output}" in stderr and "Traceback" not in stderr, stderr
    assert not (tiny_model_dir / "results").exists() and not (tiny_graphs / "results").exists()


def test_a_results_root_may_hold_the_graph_sets_it_measures(tiny_graphs, tmp_path, capsys, monkeypatch):
    from deformer_bench.api.benchmarking import BenchmarkRequest, bench_inputs
    from deformer_bench.files import check_distinct_paths

    request = BenchmarkRequest(graphs=[tiny_graphs], output=tiny_graphs.parent)
    check_distinct_paths({"--output": request.output}, bench_inputs(request), roots=("--output",))


class CrashingTarget(Target):
    """A local target whose runner crashes (exit 139) in jobs of the given modes; the others run for real."""

    def __init__(self, crashing_python, crash_modes, batch_size=None):
        super().__init__(timeout_s=120)
        self.crashing_python, self.crash_modes, self.batch_size = crashing_python, crash_modes, batch_size

    def execute(self, work_dir, arguments, stdin):
        job = json.loads(stdin)
        if job["mode"] in self.crash_modes and self.batch_size in (None, job.get("batch_size")):
            return subprocess.run([self.crashing_python, *arguments], cwd=work_dir, input=stdin, capture_output=True,
                                  text=True)
        return super().execute(work_dir, arguments, stdin)


@pytest.fixture()
def crashing_python(tmp_path):
    crashing = tmp_path / "crashing-python"
    crashing.write_text("#!/bin/sh\necho 'Fatal Python error: Segmentation fault' >&2\nexit 139\n")
    crashing.chmod(0o755)
    return str(crashing)


def test_a_device_whose_runner_cannot_start_exits_3_and_leaves_nothing_in_output(tiny_graphs, tmp_path, capsys,
                                                                                  monkeypatch, crashing_python):
    monkeypatch.setattr("deformer_bench.api.benchmarking.make_target",
                        lambda *args, **kwargs: CrashingTarget(crashing_python, {"probe", "parity", "timing", "memory"}))
    output = tmp_path / "results"
    earlier = output / "2026-01-01-an-earlier-run"
    earlier.mkdir(parents=True)
    code, stderr = in_process(["--graphs", tiny_graphs, "--quick", "--output", output, "--quiet"], capsys)
    assert code == 3, stderr
    # the lone device's own error, with its own hint
    assert "error: runner job (probe) on local" in stderr and "failed with exit code 139: Fatal Python error" in stderr
    assert "fix: the target's Python could not run the runner" in stderr and "Traceback" not in stderr
    assert list(output.iterdir()) == [earlier]  # no new run, no staging leftovers


def test_when_nothing_was_measured_nothing_is_written(tiny_graphs, tmp_path, capsys, monkeypatch, crashing_python):
    monkeypatch.setattr("deformer_bench.api.benchmarking.make_target",
                        lambda *args, **kwargs: CrashingTarget(crashing_python, {"timing"}))
    code, stderr = in_process(["--graphs", tiny_graphs, "--quick", "--output", tmp_path / "r", "--quiet"], capsys)
    assert code == 3 and "error: nothing was measured" in stderr and not (tmp_path / "r").exists()


def test_a_case_that_crashes_is_recorded_as_failed_and_the_rest_saved(tiny_graphs, tmp_path, capsys, monkeypatch,
                                                                      crashing_python):
    monkeypatch.setattr("deformer_bench.api.benchmarking.make_target",
                        lambda *args, **kwargs: CrashingTarget(crashing_python, {"memory"}, batch_size=1))
    profile = tmp_path / "short.yaml"  # --quick would keep the first batch size only
    profile.write_text("name: short\ndescription: d\ndevice: cpu\nintra_op_threads: 1\nbatch_sizes: [1, 2]\n"
                       "warmup_min_count: 1\nwarmup_min_time_s: 0\nmin_count: 3\nmin_time_s: 0\n"
                       "memory_iterations: 1\n")
    code, stderr = in_process(["--graphs", tiny_graphs, "--processes", "1", "--output", tmp_path / "r", "--quiet",
                               "--profile", profile], capsys)
    assert code == 3, stderr
    assert f"failed: cpu: {tiny_graphs.name} k=1 batch 1: runner job (memory)" in stderr
    [directory] = list((tmp_path / "r").iterdir())
    results = json.loads((directory / "results.json").read_text())
    [config] = results["configs"]
    assert [batch["batch_size"] for batch in config["batches"]] == [2] and config["failures"][0]["batch_size"] == 1
    assert config["parity"]["passed"]
    assert "## Failures" in (directory / "report.md").read_text()


def test_cuda_without_a_gpu_is_skipped_with_one_line_and_no_figure(tiny_graphs, tmp_path):
    code, out, err = cli("--graphs", tiny_graphs, "--quick", "--output", tmp_path, "--quiet", "--device", "cpu,cuda")
    assert code == 0, err
    assert "cuda: skipped (onnxruntime" in out and "has no CUDAExecutionProvider" in out
    [directory] = list(tmp_path.iterdir())
    results = json.loads((directory / "results.json").read_text())
    assert [config["device"] for config in results["configs"]] == ["cpu"]
    assert [(d["device"], d["status"]) for d in results["devices"]] == [("cpu", "measured"), ("cuda", "skipped")]
    assert "| cuda " not in (directory / "results.csv").read_text() and ",cuda," not in (directory / "results.csv").read_text()


def test_cuda_alone_without_a_gpu_is_an_error_and_writes_nothing(tiny_graphs, tmp_path):
    code, out, err = cli("--graphs", tiny_graphs, "--quick", "--output", tmp_path / "r", "--quiet", "--device", "cuda")
    assert code == 2 and "cuda: skipped" in out and "error: no device can be measured" in err
    assert not (tmp_path / "r").exists()


def test_graph_sets_of_one_folder_name_get_labels_of_their_own(tiny_graphs, tmp_path):
    from deformer_bench.api.benchmarking import BenchmarkRequest, existing_configs

    for model in ("modelA", "modelB"):
        shutil.copytree(tiny_graphs, tmp_path / model / "graphs")
    configs = existing_configs(BenchmarkRequest(graphs=[tmp_path / "modelA" / "graphs",
                                                        tmp_path / "modelB" / "graphs"]))
    assert [config.label for config in configs] == ["modelA/graphs", "modelB/graphs"]
    from deformer_bench.contracts.errors import ConfigError

    with pytest.raises(ConfigError, match="more than once"):
        existing_configs(BenchmarkRequest(graphs=[tmp_path / "modelA" / "graphs",
                                                  tmp_path / "modelA" / ".." / "modelA" / "graphs"]))


def test_a_repeated_layer_is_refused_before_any_work(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    code, stderr = in_process(["--model", tiny_model_dir, "--layer", "1,1", "--quick", "--output", tmp_path / "r"],
                              capsys)
    assert code == 2 and "names a layer more than once" in stderr and not (tmp_path / "r").exists()


def test_a_damaged_graph_is_refused_before_any_measurement(tiny_graphs, tmp_path, capsys, monkeypatch):
    import hashlib

    monkeypatch.setattr("deformer_bench.bench.run.measure_config", _must_not_run)
    graphs = tmp_path / "g"
    shutil.copytree(tiny_graphs, graphs)
    (graphs / "upper.onnx").write_bytes(b"not a graph")
    manifest = json.loads((graphs / "manifest.json").read_text())
    manifest["graphs"]["upper"]["sha256"] = hashlib.sha256(b"not a graph").hexdigest()
    (graphs / "manifest.json").write_text(json.dumps(manifest))
    code, stderr = in_process(["--graphs", tiny_graphs, graphs, "--quick", "--output", tmp_path / "r", "--quiet"],
                              capsys)
    assert code == 2 and "upper.onnx cannot be read" in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "r").exists()


def test_a_results_root_created_for_a_failed_save_is_removed(tmp_path, monkeypatch):
    from deformer_bench.bench import run
    from deformer_bench.contracts.results import ResultsDocument

    def report_fails(directory):
        raise OSError(28, "No space left on device")

    results = ResultsDocument(environment={}, profile={"name": "p"}, profiles={}, timing_processes=1)
    with pytest.raises(Exception):
        run.save_results(results, tmp_path / "new-root", "label", report_fails)
    assert list(tmp_path.iterdir()) == []


def test_the_torch_backend_measures_the_pytorch_deformer_and_checks_it_against_onnxruntime(tiny_model_dir, tmp_path):
    code, out, err = cli("--model", tiny_model_dir, "--backend", "torch", "--question-len", "8", "--passage-len", "24",
                         "--quick", "--output", tmp_path, "--quiet")
    assert code == 0, err
    [directory] = list(tmp_path.iterdir())
    results = json.loads((directory / "results.json").read_text())
    [config] = results["configs"]
    assert (config["backend"], config["providers"]["asked"]) == ("torch", "torch:cpu:float32")
    assert config["providers"]["used"] == ["torch:cpu:float32"]
    # the PyTorch model and the exported graphs agree: the same weights were loaded on both sides
    assert config["parity"]["passed"] and max(config["parity"]["max_abs_diff"].values()) < 1e-4
    assert config["batches"][0]["latency"]["online"]["p50_ms"] > 0
    assert results["devices"][0]["environment"]["torch"]["version"]


@pytest.mark.parametrize("args, message", [
    (["--graphs", "{graphs}"], "--backend torch measures the PyTorch DeFormer"),
    (["--model", "{model}", "--device", "arm", "--allow-emulation"], "--backend torch runs on cpu and cuda only"),
    (["--model", "{model}", "--variant", "int8"], "--variant picks ONNX graph variants"),
])
def test_the_torch_backend_refuses_what_it_cannot_measure(tiny_model_dir, tiny_graphs, tmp_path, capsys, monkeypatch,
                                                         args, message):
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    args = [arg.format(graphs=tiny_graphs, model=tiny_model_dir) for arg in args]
    code, stderr = in_process(["--backend", "torch", "--quick", "--output", tmp_path / "r", *args], capsys)
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_arm_without_a_target_on_this_machine_is_refused_before_any_export(tiny_model_dir, tmp_path, capsys,
                                                                            monkeypatch):
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        pytest.skip("this machine is an ARM one: arm runs here")
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    code, stderr = in_process(["--model", tiny_model_dir, "--device", "arm", "--quick", "--output", tmp_path / "r"],
                              capsys)
    assert code == 2 and "no ARM target is given" in stderr and "--allow-emulation" in stderr


def test_a_target_python_that_does_not_exist_fails_that_device_only(tiny_graphs, tmp_path, capsys):
    profile = tmp_path / "gpu.yaml"
    profile.write_text("name: gpu\ndescription: d\ndevice: cuda\nintra_op_threads: 1\nbatch_sizes: [1]\n"
                       f"target: {{python: {tmp_path / 'no-such-python'}}}\n")
    code, stderr = in_process(["--graphs", tiny_graphs, "--device", "cpu,cuda", "--profile", profile, "--quick",
                               "--output", tmp_path / "r", "--quiet"], capsys)
    assert code == 3, stderr
    assert f"cannot start {tmp_path / 'no-such-python'}" in stderr and "Traceback" not in stderr
    [directory] = list((tmp_path / "r").iterdir())
    results = json.loads((directory / "results.json").read_text())
    assert [(d["device"], d["status"]) for d in results["devices"]] == [("cpu", "measured"), ("cuda", "failed")]


def test_a_results_folder_is_named_for_the_models_not_their_variants(tmp_path):
    """The folder of a run of four variants of two models was 164 characters, every variant's label in it; the
    variants are the report's rows, the name says which models."""
    from deformer_bench.bench.run import BenchConfig
    from deformer_bench.bench.run import measured_models, variant_label

    configs = [BenchConfig(variant_label(model, variant), tmp_path, {}, variant)
               for model in ("bert-base-random-weights", "minilm-l6-h384")
               for variant in ("float32", "optimized", "int8", "int8-arm64")]
    assert measured_models(configs) == "bert-base-random-weights+minilm-l6-h384"
    assert measured_models(configs[4:]) == "minilm-l6-h384"


@pytest.fixture(scope="module")
def pq_cache(tiny_graphs, tmp_path_factory):
    """A pq passage cache (m=8) of the tiny graph set."""
    pytest.importorskip("faiss")  # building it needs faiss; the bench does not
    from deformer_bench.contracts.manifest import load_graph_set
    from tests.passage_cache.test_codec_cache import build, windows

    ids, mask = windows(1000)
    directory = tmp_path_factory.mktemp("pq") / "cache"
    build(load_graph_set(tiny_graphs), ids, mask, directory, dtype="pq", codec_settings={"m": 8})
    return directory


def test_bench_serves_the_online_path_from_a_codec_cache_too(tiny_graphs, pq_cache, tmp_path):
    """--served-cache: online_served_codec timed in every timing process beside online_served, its codec named in
    the results and its decode cost in the report."""
    code, _, err = cli("--graphs", tiny_graphs, "--served-cache", pq_cache, "--quick", "--processes", "1",
                       "--output", tmp_path / "r", "--quiet")
    assert code == 0, err
    [directory] = list((tmp_path / "r").iterdir())
    [config] = json.loads((directory / "results.json").read_text())["configs"]
    assert config["served_codec"]["codec"] == "pq m=8 transform=none alpha=0.1"
    [batch] = config["batches"]
    assert {"online_served", "online_served_codec"} <= set(batch["processes"][0]["samples_ns"])
    assert batch["latency"]["online_served_codec"]["count"] >= 3
    assert "online_served_codec" not in batch["memory"]  # timed only, like online_served
    report = (directory / "report.md").read_text()
    assert "codec_served_speedup" in report and "decode_cost" in report
    assert f"pq m=8 transform=none alpha=0.1 (8 bytes of codes a token) from `{pq_cache}`" in report


@pytest.mark.parametrize("args, message", [
    (["--scenario", "single-stream"], "--served-cache times the graph-level served path"),
    (["--arch", "minilm-l6"], "--served-cache serves states stored with a graph set's lower_passage graph"),
])
def test_a_served_cache_without_its_graph_set_is_refused(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr("deformer_bench.api.benchmarking.load_source_model", _must_not_run)
    monkeypatch.setattr("deformer_bench.api.benchmarking.run_benchmark", _must_not_run)
    code, stderr = in_process(["--served-cache", tmp_path / "cache", *args, "--output", tmp_path / "r"], capsys)
    assert code == 2 and f"error: {message}" in stderr and "fix:" in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "r").exists()


def test_a_served_cache_of_another_graph_set_is_refused_before_any_timing(tiny_graphs, pq_cache, tmp_path, capsys,
                                                                         monkeypatch):
    manifest = json.loads((tiny_graphs / "manifest.json").read_text())
    shutil.copytree(pq_cache, tmp_path / "pq")
    cache_record = json.loads((tmp_path / "pq" / "cache.json").read_text())
    assert cache_record["identity"]["lower_passage_sha256"] == manifest["graphs"]["lower_passage"]["sha256"]
    cache_record["identity"]["lower_passage_sha256"] = "0" * 64  # as if built with another lower_passage graph
    (tmp_path / "pq" / "cache.json").write_text(json.dumps(cache_record))
    monkeypatch.setattr("deformer_bench.api.benchmarking.run_benchmark", _must_not_run)
    code, stderr = in_process(["--graphs", tiny_graphs, "--served-cache", tmp_path / "pq", "--quick", "--output",
                               tmp_path / "r"], capsys)
    assert code == 2 and "was built with another lower_passage graph" in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "r").exists()
