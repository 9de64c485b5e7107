"""deformer-bench --scenario refuses bad input with exit code 2 before LoadGen's first test, and writes nothing."""

import json
import sys
from pathlib import Path

import pytest

from .conftest import build_cache, run_bench, scenario_argv

pytest.importorskip("mlperf_loadgen")


def refused(capsys, argv: list, out) -> str:
    """The error line of a refused run (exit 2), after checking that nothing was written."""
    assert run_bench(argv) == 2
    assert not out.exists()  # not even an empty results root (staged_directory removes what it made)
    return capsys.readouterr().err


def test_a_cache_of_another_graph_set_is_refused(capsys, tmp_path, scenario_graphs, small_train_file):
    other = build_cache(scenario_graphs["unsplit"], small_train_file, tmp_path / "unsplit-cache")  # k=0's lower
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [other], small_train_file, out, "--scenario", "offline",
                                          "--variant", "float32", "--limit", "2"), out)
    assert "was built with another lower_passage graph" in error and "k=0" in error


def test_a_variant_without_its_own_cache_is_refused(capsys, tmp_path, scenario_graphs, scenario_caches,
                                                    small_train_file):
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [scenario_caches["float32"]], small_train_file, out,
                                          "--scenario", "offline", "--limit", "2"), out)  # float32 and int8-arm64
    assert "no passage cache given was built with the lower_passage graph of deformer int8-arm64" in error
    assert "deformer-cache build" in error and "--variant int8-arm64" in error


def test_a_dataset_whose_passages_the_cache_lacks_is_refused(capsys, tmp_path, scenario_graphs, small_train_file):
    document = json.loads(small_train_file.read_text())
    passages = tmp_path / "three.jsonl"
    passages.write_text("".join(json.dumps({"id": f"p{index}", "text": paragraph["context"]}) + "\n"
                                for index, paragraph in enumerate(document["data"][0]["paragraphs"][:3])))
    partial = build_cache(scenario_graphs["deformer"], passages, tmp_path / "partial")
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [partial], small_train_file, out, "--scenario", "offline",
                                          "--variant", "float32"), out)
    assert "lacks" in error and "passage windows" in error and "--append" in error


def test_a_dataset_without_passage_text_is_refused(capsys, tmp_path, scenario_graphs, scenario_caches,
                                                   small_train_file):
    document = json.loads(small_train_file.read_text())
    document["data"][0]["paragraphs"][0]["context"] = "   "
    dataset = tmp_path / "no-passages.json"
    dataset.write_text(json.dumps(document))
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [scenario_caches["float32"]], dataset, out, "--scenario",
                                          "offline", "--variant", "float32"), out)
    assert "have no passage text" in error


@pytest.mark.parametrize("extra, expected", [
    (["--model", "x"], "--model do not apply to a scenario run"),
    (["--processes", "3"], "--processes do not apply"),
    (["--target", "ssh://pi@board"], "run deformer-bench --scenario on the ARM board itself"),
    (["--device", "arm"], "a scenario run measures the machine it runs on"),
    (["--device", "cpu,cuda"], "a scenario run measures one device"),
    (["--scenario", "offline,batch"], "--scenario 'offline,batch' is not a list"),
    (["--lengths", "short"], "--lengths 'short' is not a list"),
    (["--systems", "deformer,split"], "--systems 'deformer,split' is not a list"),
    (["--limit", "100000"], "--limit 100000 is more than the 106 questions"),
    (["--doc-stride", "200"], "doc stride 200"),
    (["--latency-bound-ms", "-1"], "must be a number of milliseconds above 0 and at most 3.6e+06"),
])
def test_settings_that_do_not_fit_are_refused(capsys, tmp_path, scenario_graphs, scenario_caches, small_train_file,
                                              extra, expected):
    out = tmp_path / "out"
    argv = scenario_argv(scenario_graphs, [scenario_caches["float32"]], small_train_file, out, "--variant",
                         "float32", *(["--scenario", "offline"] if "--scenario" not in extra else []), *extra)
    error = refused(capsys, argv, out)
    assert expected in error


@pytest.mark.parametrize("option, value, message", [
    ("--latency-bound-ms", "1e300", "must be a number of milliseconds above 0 and at most 3.6e+06, got 1e300"),
    ("--latency-bound-ms", "inf", "must be a number of milliseconds above 0"),
    ("--latency-bound-ms", "nan", "must be a number of milliseconds above 0"),
    ("--max-duration-s", "1e300", "must be a number of seconds above 0 and at most 86400, got 1e300"),
    ("--max-duration-s", "0", "must be a number of seconds above 0"),
    ("--max-duration-s", "inf", "must be a number of seconds above 0"),
    ("--limit", "99999999999999999999", "must be at most 1,000,000, got 99,999,999,999,999,999,999"),
    ("--seed", "-1", "must be at least 0, got -1"),
    ("--seed", "4294967296", "must be at most 4,294,967,295"),
])
def test_numbers_past_their_bounds_are_refused(capsys, tmp_path, scenario_graphs, small_train_file, option, value,
                                               message):
    """Issue 22's bounded counts and durations: a number LoadGen would overflow on (its settings are whole ns and
    ms), a cap that ends nothing, a seed past 32 bits are refused by the option, with the bound."""
    out = tmp_path / "out"
    argv = scenario_argv(scenario_graphs, [], small_train_file, out, "--scenario", "server", "--systems", "unsplit",
                         "--variant", "float32", "--lengths", "real",
                         *(["--limit", "2"] if option != "--limit" else []), option, value)
    error = refused(capsys, argv, out)
    assert f"argument {option}: {message}" in error and "Traceback" not in error, error


@pytest.mark.parametrize("setting, message", [
    (dict(latency_bound_ms=float("inf")), "--latency-bound-ms must be a number of milliseconds above 0"),
    (dict(max_duration_s=1e300), "--max-duration-s must be a number of seconds above 0 and at most 86400"),
    (dict(limit=0), "--limit must be a whole number of questions from 1 to 1,000,000, got 0"),
    (dict(seed=2**40), "--seed must be a whole number from 0 to 4,294,967,295"),
])
def test_a_library_request_is_bounded_as_the_options_are(tmp_path, scenario_graphs, small_train_file, setting,
                                                         message):
    from deformer_bench.contracts.errors import ConfigError
    from deformer_bench.profiles import load_profile
    from deformer_bench.scenarios.run import ScenarioRequest, run_scenarios
    from deformer_bench.scenarios.systems import SystemSpec

    request = ScenarioRequest(["offline"], [SystemSpec("unsplit", scenario_graphs["unsplit"])], ["real"],
                              small_train_file, load_profile("server-cpu"), None, tmp_path / "out", **setting)
    with pytest.raises(ConfigError, match=message):
        run_scenarios(request)
    assert not (tmp_path / "out").exists()


def test_scenario_options_without_a_scenario_are_refused(capsys, tmp_path, small_train_file):
    assert run_bench(["--dataset", str(small_train_file), "--output", str(tmp_path)]) == 2
    assert "--dataset belong to the scenarios" in capsys.readouterr().err


def test_a_scenario_needs_its_dataset(capsys, tmp_path, scenario_graphs):
    assert run_bench(["--scenario", "offline", "--unsplit-graphs", str(scenario_graphs["unsplit"]), "--systems",
                      "unsplit", "--output", str(tmp_path)]) == 2
    assert "--scenario needs --dataset" in capsys.readouterr().err


def test_cuda_without_its_provider_is_refused(capsys, tmp_path, scenario_graphs, small_train_file):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [], small_train_file, out, "--scenario", "offline",
                                          "--systems", "unsplit", "--device", "cuda"), out)
    assert "has no CUDAExecutionProvider" in error and "onnxruntime-gpu" in error


def test_without_loadgen_the_fix_is_named(capsys, tmp_path, monkeypatch, scenario_graphs, small_train_file):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # an import of it now fails
    monkeypatch.setitem(sys.modules, "mlcommons_loadgen", None)
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [], small_train_file, out, "--scenario", "offline",
                                          "--systems", "unsplit", "--variant", "float32"), out)
    assert "LoadGen, which is not installed" in error and "deformer-bench[scenarios]" in error


def test_the_default_graph_sets_name_the_make_target(capsys, tmp_path, monkeypatch, small_train_file):
    monkeypatch.chdir(tmp_path)  # no build/reference-graphs here
    assert run_bench(["--scenario", "offline", "--dataset", str(small_train_file), "--output", "out"]) == 2
    assert "make scenario-graphs" in capsys.readouterr().err


def test_an_output_that_is_a_file_is_refused_first(capsys, tmp_path, scenario_graphs, small_train_file):
    out = tmp_path / "results"
    out.write_text("mine")
    argv = scenario_argv(scenario_graphs, [tmp_path / "no-such-cache"], small_train_file, out, "--scenario",
                         "offline", "--variant", "float32")
    assert run_bench(argv) == 2
    assert "--output" in capsys.readouterr().err and out.read_text() == "mine"  # before the cache was read


@pytest.mark.parametrize("variant", ["float32", "int8-arm64"])
def test_a_missing_cache_names_the_build_that_makes_it(capsys, tmp_path, monkeypatch, scenario_graphs,
                                                       small_train_file, variant):
    """The float32 graphs are deformer-cache build's default: the command a refusal names gives --variant for a
    variant only (deformer-cache's --variant names a variant the graph set was exported with), and pastes as it
    is, from any folder."""
    monkeypatch.chdir(tmp_path)  # no build/scenario-caches here: the default cache is missing
    graphs = scenario_graphs["deformer"]
    if variant != "float32":  # every run has the float32 systems: theirs is found, the variant's is not
        (tmp_path / "build" / "scenario-caches" / f"{graphs.name}-float32").mkdir(parents=True)
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [], small_train_file, out, "--scenario", "offline",
                                          "--variant", variant, "--systems", "deformer"), out)
    assert f"no passage cache for deformer {variant}" in error
    command = error.split("or build it (", 1)[1].split("), or give --passage-cache", 1)[0]
    option = "" if variant == "float32" else f" --variant {variant}"
    assert command == (f"deformer-cache build {graphs}{option} --passages {small_train_file} --out "
                       f"{tmp_path / 'build' / 'scenario-caches' / f'{graphs.name}-{variant}'} --doc-stride 16")


def test_an_unfinished_cache_names_the_build_that_started_it(capsys, tmp_path, monkeypatch, scenario_graphs,
                                                             small_train_file):
    """An unfinished cache goes on only with the build it was started for (issue 22): the refusal names that
    build's own command, not a new build of the dataset into it."""
    from deformer_bench import serving
    from deformer_bench.cli.cache import cache_main
    from deformer_bench.cli.common import run_cli

    from .conftest import DOC_STRIDE

    real, runs = serving.evaluation_session, []

    class Interrupting:  # lower_passage interrupted (as Ctrl-C would) at its third window
        def __init__(self, path):
            self.session = real(path)

        def run(self, names, feed):
            runs.append(1)
            if len(runs) == 3:
                raise KeyboardInterrupt
            return self.session.run(names, feed)

    cache = tmp_path / "unfinished"
    with monkeypatch.context() as patch:
        patch.setattr(serving, "evaluation_session", Interrupting)
        patch.setattr("deformer_bench.api.caching.evaluation_session", Interrupting)  # deformer-cache build's
        assert run_cli(cache_main, ["build", str(scenario_graphs["deformer"]), "--passages", str(small_train_file),
                                    "--out", str(cache), "--doc-stride", str(DOC_STRIDE), "--segment-windows", "1",
                                    "--batch-size", "1", "--quiet"]) == 130
    capsys.readouterr()
    out = tmp_path / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [cache], small_train_file, out, "--scenario", "offline",
                                          "--variant", "float32", "--systems", "deformer"), out)
    assert f"passage cache {cache} is not finished" in error
    assert "go on with the command that started it: deformer-cache build" in error and f"--out {cache}" in error


@pytest.fixture
def own_inputs(tmp_path, scenario_graphs, scenario_caches, small_train_file, tiny_with_tokenizer) -> dict:
    """Copies of everything a run reads, in this test's folder: the graph sets (their manifests naming the copied
    model folder, the default tokenizer), the float32 passage cache, the dataset and a profile file."""
    import shutil

    inputs = {"model": tmp_path / "model", "dataset": tmp_path / "dev.json", "profile": tmp_path / "mine.yaml",
              "cache": tmp_path / "cache"}
    shutil.copytree(tiny_with_tokenizer, inputs["model"])
    shutil.copyfile(small_train_file, inputs["dataset"])
    shutil.copytree(scenario_caches["float32"], inputs["cache"])
    from deformer_bench.profiles import load_profile

    inputs["profile"].write_text(Path(load_profile("server-cpu").source).read_text())
    for kind in ("unsplit", "deformer"):
        inputs[kind] = tmp_path / f"{kind}-graphs"
        shutil.copytree(scenario_graphs[kind], inputs[kind])
        manifest = json.loads((inputs[kind] / "manifest.json").read_text())
        assert Path(manifest["model"]["source"]) == tiny_with_tokenizer  # the default tokenizer is read from there
        manifest["model"]["source"] = str(inputs["model"])
        (inputs[kind] / "manifest.json").write_text(json.dumps(manifest))
    return inputs


def snapshot(root: Path) -> list:
    return sorted((str(path.relative_to(root)), str(path.readlink()) if path.is_symlink() else path.is_dir()
                   or path.read_bytes()) for path in root.rglob("*"))


@pytest.mark.parametrize("output", ["the unsplit graph set", "inside the deformer graph set", "the passage cache",
                                    "inside the passage cache", "the tokenizer folder", "inside the tokenizer folder",
                                    "a link to the deformer graph set", "inside a variant's folder"])
def test_an_output_on_or_inside_an_input_is_refused_before_anything_is_read(capsys, tmp_path, own_inputs, output):
    """Issue 22's rule for every command's paths: the results root is none of what the run reads, named (graph
    sets, caches, dataset, profile) or found by default (the tokenizer folder a graph set's manifest names), and
    lies inside none of them; nothing is written."""
    inputs = own_inputs
    out = {"the unsplit graph set": inputs["unsplit"], "inside the deformer graph set": inputs["deformer"] / "results",
           "the passage cache": inputs["cache"], "inside the passage cache": inputs["cache"] / "results",
           "the tokenizer folder": inputs["model"], "inside the tokenizer folder": inputs["model"] / "results",
           "a link to the deformer graph set": tmp_path / "link",
           "inside a variant's folder": inputs["deformer"] / "variants" / "int8-arm64" / "results"}[output]
    (tmp_path / "link").symlink_to(inputs["deformer"])
    before = snapshot(tmp_path)
    argv = ["--scenario", "offline", "--dataset", str(inputs["dataset"]), "--unsplit-graphs", str(inputs["unsplit"]),
            "--deformer-graphs", str(inputs["deformer"]), "--passage-cache", str(inputs["cache"]), "--systems",
            "unsplit,deformer", "--variant", "float32", "--doc-stride", "16", "--limit", "2", "--profile",
            str(inputs["profile"]), "--output", str(out), "--quick", "--quiet"]
    assert run_bench(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --output ") and "which this command reads" in error and "Traceback" not in error, \
        error
    assert snapshot(tmp_path) == before


def test_a_results_root_may_hold_what_the_run_reads(own_inputs):
    """The results root only gets a new folder of the run's own: it may hold the inputs (results/ beside the
    graph sets), as the graph-level benchmark's may."""
    from deformer_bench.profiles import load_profile
    from deformer_bench.scenarios.run import ScenarioRequest, check_output_location
    from deformer_bench.scenarios.systems import SystemSpec

    request = ScenarioRequest(["offline"], [SystemSpec("unsplit", own_inputs["unsplit"])], ["real"],
                              own_inputs["dataset"], load_profile(str(own_inputs["profile"])), None,
                              own_inputs["dataset"].parent, passage_caches=[own_inputs["cache"]])
    check_output_location(request)  # no error


def test_a_run_that_fails_midway_leaves_no_results_root(capsys, tmp_path, scenario_graphs, scenario_caches,
                                                        small_train_file, monkeypatch):
    """A failure during the measurements (a damaged cache segment found at its first read, say) is one error, exit
    2, and leaves nothing: not the results folder, nor the --output root the run made for it."""
    from deformer_bench.contracts.errors import PassageCacheError
    from deformer_bench.scenarios import run

    def damaged(self, bound_ms):
        raise PassageCacheError("segment-00000's passage_codes.npy does not match its sha256", "rebuild the cache")

    monkeypatch.setattr(run.SystemMeasurement, "measure", damaged)
    out = tmp_path / "new" / "out"
    error = refused(capsys, scenario_argv(scenario_graphs, [scenario_caches["float32"]], small_train_file, out,
                                          "--scenario", "offline", "--variant", "float32", "--limit", "2"), out)
    assert "does not match its sha256" in error and list(tmp_path.iterdir()) == []
