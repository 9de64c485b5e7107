import json
import subprocess
import sys

import pytest

from deformer_bench.bench.runner import interleave
from deformer_bench.bench.targets import RUNNER_SCRIPT
from deformer_bench.contracts.protocol import PROTOCOL_VERSION, SERVED_CACHE_FILE, InputSpec, Job
from deformer_bench.runtime.paths import make_inputs


class FakeClock:
    """Advances only when a fake call runs: each call costs its own fixed number of ns."""

    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now

    def call(self, cost_ns, log, name):
        def run():
            log.append(name)
            self.now += cost_ns
        return run


def make_calls(clock, log, costs):
    return {name: clock.call(cost, log, name) for name, cost in costs.items()}


def test_interleave_reaches_min_count_and_min_time():
    clock, log = FakeClock(), []
    calls = make_calls(clock, log, {"unsplit": 30_000_000, "online": 10_000_000})  # 30 ms, 10 ms
    samples, capped = interleave(calls, min_count=5, min_time_s=1.0, max_time_s=100.0, clock=clock)
    assert not capped
    # min_time dominates: each round costs 40 ms, so 25 rounds are needed to pass 1 s.
    assert len(samples["unsplit"]) == len(samples["online"]) == 25
    assert set(samples["unsplit"]) == {30_000_000} and set(samples["online"]) == {10_000_000}


def test_interleave_min_count_dominates_when_calls_are_slow():
    clock, log = FakeClock(), []
    calls = make_calls(clock, log, {"a": 2_000_000_000})
    samples, capped = interleave(calls, min_count=3, min_time_s=1.0, max_time_s=100.0, clock=clock)
    assert len(samples["a"]) == 3 and not capped


def test_interleave_rotates_the_order_each_round():
    clock, log = FakeClock(), []
    calls = make_calls(clock, log, {"a": 1, "b": 1, "c": 1})
    interleave(calls, min_count=3, min_time_s=0.0, max_time_s=10.0, clock=clock)
    assert log == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_interleave_stops_at_the_time_cap_and_says_so():
    clock, log = FakeClock(), []
    calls = make_calls(clock, log, {"a": 1_000_000_000})
    samples, capped = interleave(calls, min_count=100, min_time_s=0.0, max_time_s=5.0, clock=clock)
    assert capped and len(samples["a"]) == 5


def run_runner(job):
    completed = subprocess.run([sys.executable, str(RUNNER_SCRIPT)], input=json.dumps(job), capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def job(tiny_graphs, **extra):
    return {"protocol_version": PROTOCOL_VERSION, "graphs_dir": str(tiny_graphs), "batch_size": 2,
            "question_len": 8, "passage_len": 24, "passage_token_type": 1, "vocab_size": 120, "seed": 0,
            "session": {"provider": "CPUExecutionProvider", "intra_op_threads": 1, "inter_op_threads": 1,
                        "allow_spinning": False, "graph_optimization": "all"}, **extra}


def test_runner_timing_and_memory_jobs_on_a_real_graph_set(tiny_graphs, tmp_path):
    cache = tmp_path / "cache.npy"
    timing = run_runner(job(tiny_graphs, mode="timing", paths=["unsplit", "online", "passage_precompute"],
                            passage_cache_out=str(cache),
                            warmup={"min_count": 1, "min_time_s": 0.0, "max_time_s": 10.0},
                            measure={"min_count": 4, "min_time_s": 0.0, "max_time_s": 10.0}))
    assert timing["protocol_version"] == PROTOCOL_VERSION and timing["mode"] == "timing"
    assert {len(values) for values in timing["samples_ns"].values()} == {4}
    assert all(value > 0 for values in timing["samples_ns"].values() for value in values)
    assert cache.exists()
    memory = run_runner(job(tiny_graphs, mode="memory", path="online", iterations=2, passage_cache_in=str(cache)))
    assert memory["peak_rss_mb"] >= memory["rss_after_load_mb"] > 10
    if sys.platform.startswith("linux"):
        assert memory["rss_source"] == "proc" and memory["peak_source"] == "proc_vmhwm"


def test_the_served_path_times_a_gather_from_a_mapped_file_and_answers_as_online(tiny_graphs, tmp_path,
                                                                                   monkeypatch):
    from deformer_bench.bench import runner

    monkeypatch.chdir(tmp_path)  # the runner works in its staged work directory
    timing = runner.run_timing(Job.from_json(job(
        tiny_graphs, mode="timing", paths=["unsplit", "online", "online_served"], served_cache_mb=1,
        warmup={"min_count": 1, "min_time_s": 0.0, "max_time_s": 10.0},
        measure={"min_count": 3, "min_time_s": 0.0, "max_time_s": 10.0})))
    assert len(timing.samples_ns["online_served"]) == 3 and timing.served_cache_bytes >= 2**20
    assert not (tmp_path / SERVED_CACHE_FILE).exists()  # removed: the next process writes its own
    inputs = make_inputs(InputSpec(batch_size=2, question_len=8, passage_len=24, passage_token_type=1, vocab_size=120))
    import numpy as np

    np.savez(tmp_path / "inputs.npz", **inputs)
    parity = runner.run_parity(Job.from_json(job(tiny_graphs, mode="parity", inputs_file="inputs.npz",
                                                 outputs_file="outputs.npz",
                                                 paths=["online", "online_served", "online_miss"])))
    with np.load(tmp_path / parity.outputs_file) as outputs:
        assert np.array_equal(outputs["online_served_start_logits"], outputs["online_start_logits"])
        assert np.array_equal(outputs["online_served_end_logits"], outputs["online_end_logits"])
        # a cache miss computes the same passage states in the call: the same logits
        assert np.array_equal(outputs["online_miss_start_logits"], outputs["online_start_logits"])


def staged_pq_codec(directory, windows: int = 3) -> dict:
    """A timing job's served_codec: a pq codec of the tiny graphs' states (hidden 32: eight sub-vectors of 4, a
    transform back and a mean) made by hand, and `windows` windows' codes, staged as the host stages them."""
    import numpy as np

    rng = np.random.default_rng(0)
    codebook = {"centroids": rng.standard_normal(8 * 256 * 4).astype(np.float32),
                "sizes": np.full(8, 4, dtype=np.int32),
                "decoder": (rng.standard_normal((32, 32)) / 6).astype(np.float32),
                "mean": rng.standard_normal(32).astype(np.float32)}
    np.savez(directory / "codebook.npz", **codebook)
    np.savez(directory / "codes.npz", codes=rng.integers(0, 256, (windows, 24, 8)).astype(np.uint8))
    return {"name": "pq", "settings": {"m": 8, "transform": "pca", "alpha": 0.1}, "codebook_file": "codebook.npz",
            "codes_file": "codes.npz"}


def test_the_codec_served_path_decodes_the_staged_codes_in_every_call(tiny_graphs, tmp_path, monkeypatch):
    """online_served_codec (deformer-bench --served-cache): the staged windows' codes served from mapped files and
    decoded in every call, upper fed the decoded states; timed beside online_served, its files removed after."""
    import numpy as np

    from deformer_bench.bench import runner
    from deformer_bench.runtime.codec_decode import decode_windows, make_decoder
    from deformer_bench.runtime.paths import path_call, served_sources
    from deformer_bench.runtime.sessions import GraphSetSessions

    monkeypatch.chdir(tmp_path)  # the runner works in its staged work directory
    served_codec = staged_pq_codec(tmp_path)
    paths = ["unsplit", "online", "online_served", "online_served_codec"]
    timing = runner.run_timing(Job.from_json(job(
        tiny_graphs, mode="timing", paths=paths, served_cache_mb=1, served_codec=served_codec,
        warmup={"min_count": 1, "min_time_s": 0.0, "max_time_s": 10.0},
        measure={"min_count": 3, "min_time_s": 0.0, "max_time_s": 10.0})))
    assert {path: len(values) for path, values in timing.samples_ns.items()} == dict.fromkeys(paths, 3)
    assert timing.served_codes_bytes >= 2**20 and timing.served_cache_bytes >= 2**20
    assert timing.served_codec_one_blas_thread is True
    assert sorted(path.name for path in tmp_path.iterdir()) == ["codebook.npz", "codes.npz"]  # served files gone

    graph_set = GraphSetSessions(tiny_graphs)
    inputs = make_inputs(InputSpec(batch_size=2, question_len=8, passage_len=24, passage_token_type=1,
                                   vocab_size=120))
    states = graph_set.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])
    served = served_sources(["online_served_codec"], states, 0, 0, served_codec)
    with np.load("codebook.npz") as codebook, np.load("codes.npz") as codes:
        decoded = decode_windows(make_decoder("pq", served_codec["settings"], dict(codebook)),
                                 {"codes": codes["codes"][:2]})  # the batch: the first two staged windows
    assert not np.allclose(decoded, states)  # the codec's states, not the float32 ones
    logits = path_call("online_served_codec", graph_set, inputs, states, served)()
    expected = graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"], decoded,
                                inputs["passage_attention_mask"])
    for got, want in zip(logits, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_staged_upper_with_the_product_takes_the_look_ups_and_gives_the_same_logits(tiny_graphs, tmp_path,
                                                                                      monkeypatch):
    """Where the host stages upper's graph with pq's product inside (served_codec's upper_file), online_served_codec
    runs only the look-ups in numpy and that graph the product: the logits of upper on the decoded states."""
    import numpy as np

    from deformer_bench.bench import runner
    from deformer_bench.exporters.codec_upper import upper_with_product
    from deformer_bench.runtime.codec_decode import decode_windows, graph_product, make_decoder
    from deformer_bench.runtime.paths import path_call, served_sources
    from deformer_bench.runtime.sessions import GraphSetSessions

    monkeypatch.chdir(tmp_path)
    served_codec = staged_pq_codec(tmp_path)
    with np.load("codebook.npz") as codebook:
        decoder = make_decoder("pq", served_codec["settings"], dict(codebook))
    (tmp_path / "upper-coded.onnx").write_bytes(upper_with_product(tiny_graphs / "upper.onnx",
                                                                   *graph_product(decoder)))
    served_codec["upper_file"] = "upper-coded.onnx"
    timing = runner.run_timing(Job.from_json(job(
        tiny_graphs, mode="timing", paths=["online_served", "online_served_codec"], served_cache_mb=1,
        served_codec=served_codec, warmup={"min_count": 1, "min_time_s": 0.0, "max_time_s": 10.0},
        measure={"min_count": 3, "min_time_s": 0.0, "max_time_s": 10.0})))
    assert len(timing.samples_ns["online_served_codec"]) == 3

    graph_set = GraphSetSessions(tiny_graphs)
    inputs = make_inputs(InputSpec(batch_size=2, question_len=8, passage_len=24, passage_token_type=1,
                                   vocab_size=120))
    states = graph_set.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])
    served = served_sources(["online_served_codec"], states, 0, 0, served_codec)
    assert served["online_served_codec"].upper is not None
    assert served["online_served_codec"].next_states().shape == (2, 24, 32)  # coefficients: K = 8 x 4
    with np.load("codes.npz") as codes:
        decoded = decode_windows(decoder, {"codes": codes["codes"][:2]})
    logits = path_call("online_served_codec", graph_set, inputs, states, served)()
    expected = graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"], decoded,
                                inputs["passage_attention_mask"])
    for got, want in zip(logits, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_batch_larger_than_the_staged_windows_takes_them_again_from_the_first(tmp_path, monkeypatch):
    import numpy as np

    from deformer_bench.runtime.paths import served_codes

    monkeypatch.chdir(tmp_path)
    served = served_codes(staged_pq_codec(tmp_path, windows=2), batch=5, min_bytes=0, seed=0)
    with np.load("codes.npz") as codes:
        staged = codes["codes"]
    np.testing.assert_array_equal(served.next_arrays()["codes"], staged[[0, 1, 0, 1, 0]])


def test_runner_refuses_another_protocol(tiny_graphs):
    completed = subprocess.run([sys.executable, str(RUNNER_SCRIPT)],
                               input=json.dumps({**job(tiny_graphs), "protocol_version": 0}),
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0 and "protocol" in completed.stderr


def test_memory_without_proc_on_macos_reads_ps_and_scales_ru_maxrss_from_bytes(tiny_graphs, tmp_path, monkeypatch):
    """macOS has no /proc: current RSS comes from `ps` (KiB), the peak from ru_maxrss, which is bytes there."""
    import resource
    import types

    from deformer_bench.bench import runner

    monkeypatch.setattr(runner, "PROC_STATUS", str(tmp_path / "no-proc" / "status"))
    monkeypatch.setattr(runner, "PROC_CLEAR_REFS", str(tmp_path / "no-proc" / "clear_refs"))
    monkeypatch.setattr(runner.sys, "platform", "darwin")
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=300 * 2**20))  # bytes
    monkeypatch.setattr(runner, "ps_rss_kb", lambda: 200 * 1024)
    result = runner.run_memory(Job.from_json(job(tiny_graphs, mode="memory", path="unsplit", iterations=1)))
    assert result.rss_after_load_mb == 200 and result.rss_source == "ps"
    assert result.peak_rss_mb == 300 and result.load_peak_rss_mb == 300 and result.peak_source == "ru_maxrss"
    assert result.peak_excludes_loading is False


def test_ru_maxrss_is_kib_on_linux(monkeypatch):
    import resource
    import types

    from deformer_bench.bench import runner

    monkeypatch.setattr(runner.sys, "platform", "linux")
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=300 * 1024))
    assert runner.ru_maxrss_kb() == 300 * 1024


def test_ps_reads_this_process_in_kib():
    import shutil

    import pytest

    from deformer_bench.bench import runner

    if shutil.which("ps") is None:
        pytest.skip("no ps on this machine (a slim container)")
    from_ps, from_proc = runner.ps_rss_kb(), runner.read_status_kb("VmRSS")
    assert from_ps > 1024  # a Python process holds more than 1 MiB
    if from_proc is not None:  # same unit (KiB) as /proc
        assert 0.5 < from_ps / from_proc < 2


def test_memory_figures_missing_everywhere_are_none_not_a_crash(tiny_graphs, tmp_path, monkeypatch):
    from deformer_bench.bench import runner

    monkeypatch.setattr(runner, "PROC_STATUS", str(tmp_path / "no-proc" / "status"))
    monkeypatch.setattr(runner, "PROC_CLEAR_REFS", str(tmp_path / "no-proc" / "clear_refs"))
    monkeypatch.setattr(runner, "ps_rss_kb", lambda: None)
    monkeypatch.setattr(runner, "ru_maxrss_kb", lambda: None)
    result = runner.run_memory(Job.from_json(job(tiny_graphs, mode="memory", path="unsplit", iterations=1)))
    assert result.rss_after_load_mb is None and result.peak_rss_mb is None
    assert result.peak_excludes_loading is False


def test_a_graph_onnxruntime_cannot_load_fails_the_runner_with_exit_code_3(tiny_graphs, tmp_path):
    import shutil

    import pytest

    from deformer_bench.bench.targets import Target
    from deformer_bench.contracts.errors import EXIT_FAILURE, RunnerError

    broken = tmp_path / "graphs"
    shutil.copytree(tiny_graphs, broken)
    (broken / "full.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(RunnerError, match=r"runner job \(memory\) on local .* failed with exit code 1") as caught:
        with Target(timeout_s=120).staged() as work:
            work.run_job(job(broken, mode="memory", path="unsplit", iterations=1))
    assert caught.value.exit_code == EXIT_FAILURE


def test_a_provider_fallback_is_an_error_not_a_figure(tiny_graphs):
    """The CPU build of onnxruntime has no CUDA provider: asked for it, it would silently run on the CPU."""
    from deformer_bench.runtime.sessions import ProviderFallback
    from deformer_bench.runtime.sessions import open_session as make_session

    settings = {"provider": "CUDAExecutionProvider", "intra_op_threads": 1, "inter_op_threads": 1,
                "allow_spinning": False, "graph_optimization": "all"}
    with pytest.raises(ProviderFallback, match="CUDAExecutionProvider was asked for upper.onnx but .* runs it on "
                                               "CPUExecutionProvider"):
        make_session(tiny_graphs / "upper.onnx", settings)
    assert make_session(tiny_graphs / "upper.onnx", {**settings, "provider": "CPUExecutionProvider"}).get_providers()[0] \
        == "CPUExecutionProvider"


def test_the_runner_imports_no_torch():
    """It is what ships to a measured machine: numpy, onnxruntime, the standard library and runtime/ only."""
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
            "sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code, str(RUNNER_SCRIPT)]).returncode == 0


def test_the_three_paths_of_a_graph_set(tiny_graphs):
    import numpy as np

    from deformer_bench.runtime.sessions import GraphSetSessions

    graph_set = GraphSetSessions(tiny_graphs)
    rng = np.random.default_rng(0)
    question = rng.integers(3, 120, (2, 8))
    passage = rng.integers(3, 120, (2, 24))
    ones_q, ones_p = np.ones_like(question), np.ones_like(passage)
    passage_hidden = graph_set.lower_passage(passage, ones_p)
    assert passage_hidden.shape == (2, 24, 32) and passage_hidden.dtype == np.float32
    start, end = graph_set.online(question, ones_q, passage_hidden, ones_p)
    assert start.shape == end.shape == (2, 32)
    with pytest.raises(KeyError, match="not graphs of the contract"):
        GraphSetSessions(tiny_graphs, ("upper", "middle"))
