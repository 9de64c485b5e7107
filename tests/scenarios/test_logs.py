"""What LoadGen wrote is read by the project's one strict JSON reader (issue 22): a key given twice, NaN or
Infinity is refused with one clear error naming the file and line, never read as Python's json reads it."""

import json

import pytest

from deformer_bench.scenarios import logs
from deformer_bench.scenarios.logs import LoadGenLogError


def detail_line(key, value) -> str:
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "namespace": "mlperf::logging",
                                     "event_type": "POINT_IN_TIME", "metadata": {"is_error": False}}) + "\n"


def write_detail(directory, *lines) -> None:
    (directory / logs.DETAIL_FILE).write_text("".join(lines))


def test_the_detail_log_is_read_key_by_key(tmp_path):
    write_detail(tmp_path, detail_line("effective_scenario", "Offline"), "not a log line\n",
                 ':::MLLOG {"key": "result_samples_per_s',  # a line LoadGen cut is passed over, as before
                 "\n", detail_line("result_samples_per_second", 12.5))
    assert logs.read_detail_log(tmp_path).values == {"effective_scenario": "Offline",
                                                     "result_samples_per_second": 12.5}


@pytest.mark.parametrize("line, message", [
    (':::MLLOG {"key": "result_samples_per_second", "value": NaN}\n', "NaN"),
    (':::MLLOG {"key": "result_validity", "value": "INVALID", "value": "VALID"}\n', "'value' is given twice"),
    (':::MLLOG {"key": "result_90.00_percentile_latency_ns", "value": 1e400}\n', "1e400"),
    (':::MLLOG ["result_validity", "VALID"]\n', "a list, where LoadGen writes an object"),
])
def test_a_detail_line_json_does_not_allow_is_refused(tmp_path, line, message):
    """Python's json read NaN as a figure and kept the last of two values (a VALID verdict over INVALID)."""
    write_detail(tmp_path, detail_line("effective_scenario", "Offline"), line)
    with pytest.raises(LoadGenLogError, match="mlperf_log_detail.txt in .*, line 2: ") as refused:
        logs.read_detail_log(tmp_path)
    assert message in str(refused.value.message)


def write_accuracy(directory, text: str) -> None:
    (directory / logs.ACCURACY_FILE).write_text(text)


def test_the_accuracy_log_is_read_by_the_strict_reader(tmp_path):
    write_accuracy(tmp_path, '[{"seq_id": 0, "qsl_idx": 1, "data": "4142"}, {"seq_id": 1, "qsl_idx": 0, "data": ""}]')
    assert logs.read_accuracy_log(tmp_path) == {1: b"AB", 0: b""}
    write_accuracy(tmp_path, '[{"seq_id": 0, "qsl_idx": 0, "qsl_idx": 1, "data": "41"}]')
    with pytest.raises(LoadGenLogError, match="accuracy log .*'qsl_idx' is given twice"):
        logs.read_accuracy_log(tmp_path)  # json read it as sample 1's answer
    for text, message in (('[{"seq_id": 0, "qsl_idx": 0, "data": NaN}]', "NaN"), ("[{", "is not valid JSON"),
                          ('[{"seq_id": 0, "data": "41"}]', "KeyError"), ('[{"seq_id": 0, "qsl_idx": 0, "data": "4"}]',
                                                                          "ValueError")):
        write_accuracy(tmp_path, text)
        with pytest.raises(LoadGenLogError, match=message):
            logs.read_accuracy_log(tmp_path)


def sample_event(seq, complete_ns) -> str:
    return ('{"name":"Sample","ph":"b","pid":0,"tid":0,"ts":1.0,"cat":"default","id":' + str(seq)
            + ',"args":{"sample_seq":' + str(seq) + ',"complete_ns":' + complete_ns + '}},\n')


def test_trace_samples_are_read_by_the_strict_reader(tmp_path):
    trace = tmp_path / logs.TRACE_FILE
    trace.write_text('{ "traceEvents": [\n' + sample_event(1, "300") + sample_event(0, "200")
                     + '{"name":"QuerySamplesComplete","ph":"X"},\n')
    assert logs.read_sample_latencies(tmp_path) == [200, 300]
    for complete_ns, message in (("NaN", "NaN"), ('300,"complete_ns":1', "'complete_ns' is given twice"),
                                 ('"300"', "are not whole numbers"), ("3.5", "are not whole numbers")):
        trace.write_text('{ "traceEvents": [\n' + sample_event(0, complete_ns))
        with pytest.raises(LoadGenLogError, match=f"mlperf_log_trace.json in .*, line 2.*{message}"):
            logs.read_sample_latencies(tmp_path)
    trace.write_text('{ "traceEvents": [\n{"name":"Sample","ph":"b","args":{}},\n')
    with pytest.raises(LoadGenLogError, match="without args.sample_seq and args.complete_ns"):
        logs.read_sample_latencies(tmp_path)  # a KeyError traceback before


@pytest.mark.parametrize("text, message", [
    ('{"format_version": 1, "runs": [], "runs": []}', "'runs' is given twice"),
    ('{"format_version": 1, "latency_bound": {"ms": Infinity}}', "Infinity"),
])
def test_results_json_is_read_by_the_strict_reader(tmp_path, text, message):
    from deformer_bench.readers import FormatError
    from deformer_bench.scenarios.report import load_results, write_report

    (tmp_path / "results.json").write_text(text)
    with pytest.raises(FormatError, match=f"scenario results .*results.json.*{message}"):
        load_results(tmp_path)
    with pytest.raises(FormatError):
        write_report(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results.json"]
