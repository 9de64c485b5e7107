"""The orchestration with a fake target: no runner processes, so it stays fast."""

import contextlib
import io
import json
import os

import pandas as pd
import pytest

from deformer_bench.bench import runner
from deformer_bench.bench.devices import DEVICES
from deformer_bench.bench.run import BenchConfig, DevicePlan, run_benchmark, save_results
from deformer_bench.contracts.protocol import Job
from deformer_bench.report import write_report
from deformer_bench.profiles import load_profile
from deformer_bench.runtime.target_environment import describe_target

MS = 1_000_000
BUSY = {"recorded_at": "2026-01-01T00:00:00+00:00", "load_average": [3.0, 2.0, 1.0], "sample_s": 0.5,
        "busy_processes": [{"pid": 9, "name": "trainer", "cpu_percent": 99.0}]}
QUIET = {"recorded_at": "2026-01-01T00:00:00+00:00", "load_average": [0.0, 0.0, 0.0], "sample_s": 0.5,
         "busy_processes": []}


class FakeTarget:
    """Timing process i sees the unsplit path take 30 + i ms; memory has no figures (as where nothing can be read).
    Probe and parity jobs are the runner's own, in this process, in a real work directory."""

    transport, emulated, pin_cores = "local", False, ()

    def __init__(self, work_dir):
        self.jobs, self.path = [], str(work_dir)

    def describe(self):
        return "fake"

    @contextlib.contextmanager
    def staged(self):
        yield self

    def put_graph_set(self, local_dir, name):
        return str(local_dir)

    def put_arrays(self, name, arrays):
        import numpy as np

        np.savez(os.path.join(self.path, name), **arrays)
        return name

    def put_bytes(self, name, data):
        with open(os.path.join(self.path, name), "wb") as handle:
            handle.write(data)
        return name

    def fetch_arrays(self, name):
        import numpy as np

        with np.load(name) as arrays:
            return {key: arrays[key] for key in arrays.files}

    def run_job(self, job):
        self.jobs.append(job)
        if job["mode"] == "probe":
            return {"mode": "probe", "environment": describe_target()}
        if job["mode"] == "parity":
            job = {**job, "inputs_file": os.path.join(self.path, job["inputs_file"]),
                   "outputs_file": os.path.join(self.path, job["outputs_file"])}
            previous = os.getcwd()
            os.chdir(self.path)  # as a target runs it: in its work directory (the served cache file goes there)
            try:
                return runner.run_parity(Job.from_json(job)).as_json()
            finally:
                os.chdir(previous)
        if job["mode"] == "memory":
            return {"mode": "memory", "path": job["path"], "rss_after_load_mb": None, "peak_rss_mb": None,
                    "load_peak_rss_mb": None, "peak_excludes_loading": False, "iterations": job["iterations"]}
        index = sum(1 for earlier in self.jobs if earlier["mode"] == "timing") - 1
        return {"mode": "timing", "pid": 100 + index, "stopped_by_time_cap": False, "load_s": 0.1,
                "samples_ns": {"unsplit": [(30 + index) * MS] * 4, "online": [10 * MS] * 4,
                               "passage_precompute": [5 * MS] * 4}}


@pytest.fixture(scope="module")
def fake_run(tiny_graphs, tmp_path_factory):
    target = FakeTarget(tmp_path_factory.mktemp("work"))
    config = BenchConfig("tiny", tiny_graphs, json.loads((tiny_graphs / "manifest.json").read_text()))
    profile = load_profile("server-cpu").quick()
    snapshots = iter([BUSY, QUIET])
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        results = run_benchmark([config], [DevicePlan(DEVICES["cpu"], profile, target)],
                                command=["deformer-bench", "--test"], progress=False, processes=3,
                                take_snapshot=lambda: next(snapshots))
    return results, target, stderr.getvalue()


def test_every_case_runs_the_asked_number_of_fresh_timing_processes(fake_run):
    results, target, _ = fake_run
    modes = [job["mode"] for job in target.jobs]
    assert modes == ["probe", "parity"] + ["timing"] * 3 + ["memory"] * 4  # online_served has none
    caches = [job["passage_cache_out"] for job in target.jobs if job["mode"] == "timing"]
    assert caches[0] and caches[1:] == [None, None]  # the first process saves the passage states
    [batch] = results.configs[0]["batches"]
    assert [process["pid"] for process in batch["processes"]] == [100, 101, 102]
    assert batch["across_processes"]["speedup_vs_unsplit"]["online"]["values"] == pytest.approx([3.0, 3.1, 3.2])
    assert results.format_version == 3 and results.timing_processes == 3
    [config] = results.configs
    assert (config["device"], config["backend"], config["transport"], config["emulated"]) == (
        "cpu", "onnxruntime", "local", False)
    assert config["providers"] == {"asked": "CPUExecutionProvider", "used": ["CPUExecutionProvider"]}
    assert config["parity"]["passed"] and config["parity"]["max_abs_diff"]["online_start_logits"] == 0.0
    assert results.devices[0]["status"] == "measured" and results.failures == []


def test_the_machine_state_is_recorded_and_a_busy_machine_warned_about(fake_run):
    results, _, stderr = fake_run
    state = results.machine_state
    assert state["at_start"] == BUSY and state["at_end"] == QUIET and not state["quiet"]
    assert results.warnings[:2] == state["warnings"]
    assert "1-min load average 3.00" in results.warnings[0] and "trainer (pid 9)" in results.warnings[1]
    assert "machine not quiet at the start" in stderr  # said as the run starts, not only at its end
    assert not results.headline["ok"]


def test_the_report_shows_processes_machine_state_and_missing_memory(fake_run, tmp_path):
    results, _, _ = fake_run
    directory = save_results(results, tmp_path / "out", "tiny", write_report)
    report = (directory / "report.md").read_text()
    assert "**Not headline figures:** --quick" in report
    assert "## Machine state" in report and "**Not quiet**" in report and "trainer (pid 9) 99%" in report
    assert "| tiny | cpu | 1 | 1 | 3 | 31.00 | 30.00..32.00 | 10.00 | 10.00..10.00 | 3.10 | 3.00..3.20 |" in report
    assert "peak_above_load_mb` is left empty" in report
    frame = pd.read_csv(directory / "results.csv")
    online = frame[frame["path"] == "online"].iloc[0]
    assert (online["speedup_process_min"], online["speedup_process_max"]) == pytest.approx((3.0, 3.2))
    assert online["processes"] == 3 and not online["machine_quiet"] and online["load_1m_at_start"] == 3.0
    assert frame["peak_rss_mb"].isna().all()
    processes = pd.read_csv(directory / "processes.csv")
    assert len(processes) == 3 * 3 and sorted(processes["process"].unique()) == [1, 2, 3]


class FakeCodecTarget(FakeTarget):
    """A fake target whose timing processes also time online_served (10 ms) and online_served_codec (10.5 ms), as
    a runner does when its job has a served codec."""

    def run_job(self, job):
        result = super().run_job(job)
        if job["mode"] == "timing":
            result["samples_ns"] = {**result["samples_ns"], "online_served": [10 * MS] * 4,
                                    **({"online_served_codec": [10_500_000] * 4} if job.get("served_codec") else {})}
        return result


def served_pq_codec():
    import numpy as np

    from deformer_bench.bench.plan import ServedCodec

    codebook = {"centroids": np.zeros(8 * 256 * 4, np.float32), "sizes": np.full(8, 4, np.int32)}
    return ServedCodec(cache="caches/pq", name="pq", settings={"m": 8, "transform": "none", "alpha": 0.1},
                       codebook=codebook, codes={"codes": np.ones((3, 24, 8), np.uint8)},
                       description="pq m=8 transform=none alpha=0.1", code_bytes_per_token=8.0)


def test_a_served_codec_is_staged_timed_beside_online_served_and_reported(tiny_graphs, tmp_path):
    """deformer-bench --served-cache: the codec's codebook and codes staged in the target's work directory, every
    timing job (not parity, not memory) asked for online_served_codec with them, and the report's decode_cost its
    p50 over online_served's."""
    import numpy as np

    target = FakeCodecTarget(tmp_path / "work")
    (tmp_path / "work").mkdir()
    manifest = json.loads((tiny_graphs / "manifest.json").read_text())
    configs = [BenchConfig("tiny", tiny_graphs, manifest, served_codec=served_pq_codec())]
    with contextlib.redirect_stderr(io.StringIO()):
        results = run_benchmark(configs, [DevicePlan(DEVICES["cpu"], load_profile("server-cpu").quick(), target)],
                                command=["deformer-bench", "--test"], progress=False, processes=2,
                                take_snapshot=lambda: QUIET)
    timings = [job for job in target.jobs if job["mode"] == "timing"]
    assert len(timings) == 2 and all("online_served_codec" in job["paths"] for job in timings)
    staged = timings[0]["served_codec"]
    assert staged["name"] == "pq" and staged["settings"]["m"] == 8
    with np.load(tmp_path / "work" / staged["codes_file"]) as codes:
        assert codes["codes"].shape == (3, 24, 8)
    with np.load(tmp_path / "work" / staged["codebook_file"]) as codebook:
        assert sorted(codebook.files) == ["centroids", "sizes"]
    others = [job for job in target.jobs if job["mode"] in ("parity", "memory")]
    assert others and all("online_served_codec" not in (job.get("paths") or [job.get("path")]) for job in others)
    [config] = results.configs
    assert config["served_codec"] == {"cache": "caches/pq", "codec": "pq m=8 transform=none alpha=0.1",
                                      "code_bytes_per_token": 8.0, "windows_staged": 3, "product": "numpy"}
    directory = save_results(results, tmp_path / "out", "tiny", write_report)
    report = (directory / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model |"))
    row = next(line for line in report.splitlines() if line.startswith("| tiny |"))
    cells = dict(zip(*([cell.strip() for cell in line.strip().strip("|").split("|")] for line in (header, row))))
    assert (cells["served_speedup"], cells["codec_served_speedup"], cells["decode_cost"]) == ("3.05", "2.90", "+5.0%")
    assert "`online_served_codec` of tiny on cpu: pq m=8 transform=none alpha=0.1 (8 bytes of codes a token) " \
           "from `caches/pq`" in report


def test_a_product_that_goes_in_upper_s_graph_is_staged_with_that_graph(tiny_graphs, tmp_path):
    """pq with a transform: the host stages upper's graph with the product inside (made from the config's upper.onnx
    by api.served_codec) beside the codes; the results and the report say where the product ran."""
    import dataclasses

    import numpy as np
    import onnx

    target = FakeCodecTarget(tmp_path / "work")
    (tmp_path / "work").mkdir()
    manifest = json.loads((tiny_graphs / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    codebook = {"centroids": rng.standard_normal(8 * 256 * 4).astype(np.float32), "sizes": np.full(8, 4, np.int32),
                "decoder": rng.standard_normal((32, 32)).astype(np.float32),
                "mean": np.zeros(32, np.float32)}
    from deformer_bench.exporters.codec_upper import upper_with_product

    graph = upper_with_product(tiny_graphs / "upper.onnx", codebook["decoder"], codebook["mean"])
    served = dataclasses.replace(served_pq_codec(), settings={"m": 8, "transform": "pca", "alpha": 0.1},
                                 codebook=codebook, description="pq m=8 transform=pca alpha=0.1", coded_upper=graph)
    with contextlib.redirect_stderr(io.StringIO()):
        results = run_benchmark([BenchConfig("tiny", tiny_graphs, manifest, served_codec=served)],
                                [DevicePlan(DEVICES["cpu"], load_profile("server-cpu").quick(), target)],
                                command=["deformer-bench", "--test"], progress=False, processes=2,
                                take_snapshot=lambda: QUIET)
    staged = next(job for job in target.jobs if job["mode"] == "timing")["served_codec"]
    graph = onnx.load(str(tmp_path / "work" / staged["upper_file"]))
    assert "passage_coefficients" in [graph_input.name for graph_input in graph.graph.input]
    [config] = results.configs
    assert config["served_codec"]["product"] == "in upper's graph"
    report = (save_results(results, tmp_path / "out", "tiny", write_report) / "report.md").read_text()
    assert "pq m=8 transform=pca alpha=0.1 (8 bytes of codes a token) from `caches/pq`; its product in upper's " \
           "graph, the look-ups in numpy" in report


def test_without_a_served_codec_no_job_asks_for_its_path(fake_run):
    _, target, _ = fake_run
    assert all("online_served_codec" not in job.get("paths", ()) and not job.get("served_codec")
               for job in target.jobs)
