"""The one JSON reader and the one YAML reader (deformer_bench/contracts/readers.py, deformer_bench/yaml_reader.py), and every kind of file read through them."""

import gzip
import io
import json

import pytest

from deformer_bench.contracts.errors import DeformerBenchError
from deformer_bench.contracts.readers import FormatError, parse_json, read_json, read_json_lines
from deformer_bench.yaml_reader import parse_yaml, read_yaml


@pytest.mark.parametrize("text, message", [
    ('{"a": 1, "a": 2}', "key 'a' is given twice in one object"),
    ('{\n "x": {\n  "y": [1, {"c": 1,\n   "c": 2}]}}', "key 'c' is given twice in the object that starts on line 3"),
    ('[1, NaN]', r"NaN is not a JSON number \(column 5\)"),
    ('{"a": "NaN and Infinity in a string are text",\n "b": -Infinity}', r"-Infinity is not a JSON number \(line 2"),
    ('{"a": [Infinity]}', "Infinity is not a JSON number"),
    ("[" * 100_000, "nest too deeply"),
    ('{"lr": 1e400}', "the number 1e400 is beyond a float's range"),  # Python would read inf
    ("1" * 5000, "a value Python cannot read: Exceeds the limit"),  # a bare ValueError before
    ('{"a": 1} {"b": 2}', r"is not valid JSON \(Extra data at column 10\)"),
    ('{"id": "p0", "text": "cut', r"\(Unterminated string starting at column 22\)"),  # was "starting at at column"
])
def test_json_that_python_reads_but_the_format_refuses(text, message):
    with pytest.raises(FormatError, match=message) as raised:
        parse_json(text, "settings s.json")
    assert str(raised.value).startswith("settings s.json") and raised.value.hint


@pytest.mark.parametrize("raw, message", [
    (gzip.compress(b'{"a": 1}'), "is gzip-compressed, not UTF-8 text"),
    (b"PK\x03\x04\x14\x00\x00\x00", "is a zip archive"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'", r"is a NumPy array \(.npy\)"),
    ('{"a": 1}'.encode("utf-16"), "is UTF-16 text"),
    (b'{"a": "caf\xe9"}', r"is not UTF-8 text \(byte 0xe9 at offset 10, line 1"),
    (b'{"a":\n "\xff"}', r"byte 0xff at offset 8, line 2"),
])
def test_what_is_not_utf8_text_is_named(raw, message):
    with pytest.raises(FormatError, match=message):
        parse_json(raw, "f.json")


def test_what_the_formats_allow_passes(tmp_path):
    assert parse_json(b'\xef\xbb\xbf{"a": [1.5, "NaN", {"a": 2}], "b": {"a": 3}}', "f") == \
        {"a": [1.5, "NaN", {"a": 2}], "b": {"a": 3}}  # a byte-order mark; equal keys in different objects
    assert parse_yaml("a: .nan\nb: {a: 1}\n", "f")["b"] == {"a": 1}  # YAML has .nan; profiles check their numbers
    (tmp_path / "log.jsonl").write_bytes(b'{"step": 1}\n\n{"step": 2}\r\n')
    assert read_json_lines(tmp_path / "log.jsonl", "training log") == [{"step": 1}, {"step": 2}]


def test_yaml_duplicates_name_both_lines_at_any_depth():
    with pytest.raises(FormatError, match=r"queue q.yaml: 'lr' is given twice \(lines 3 and 4\)"):
        parse_yaml("runs:\n  - name: a\n    lr: 1\n    lr: 2\n", "queue q.yaml")


def test_a_missing_file_or_a_folder_is_named(tmp_path):
    with pytest.raises(FormatError, match=r"settings .*absent.json does not exist"):
        read_json(tmp_path / "absent.json", "settings")
    with pytest.raises(FormatError, match=r"settings .* is a directory"):
        read_yaml(tmp_path, "settings")


# ---- every kind of file the project reads: a key twice at depth, and (JSON) a NaN, are refused by its reader ----
NESTED_DUPLICATE = '{"format_version": 1, "x": {"deep": [{"dup": 1, "dup": 2}]}}'
NESTED_NAN = '{"format_version": 1, "x": {"deep": [NaN]}}'


def _queue(path):
    from deformer_bench.cli.train_queue import read_queue

    return read_queue(path)


def _profile(path):
    from deformer_bench.profiles import load_profile

    return load_profile(str(path))


def _cache_record(path):
    from deformer_bench.passage_cache.store import read_record

    return read_record(path.parent)


def _manifest(path):
    from deformer_bench.contracts.manifest import load_graph_set

    return load_graph_set(path.parent)


def _deformer_settings(path):
    from deformer_bench.model import DeformerConfig

    return DeformerConfig.load(path.parent)


def _model_config(path):
    from deformer_bench.model import load_hf_config

    return load_hf_config(path.parent)


def _bench_results(path):
    from deformer_bench.report import load_results

    return load_results(path.parent)


def _evaluation_records(path):
    from deformer_bench.cli.analysis.variant_accuracy import read_records

    return read_records(path.parent)


def _training_record(path):
    from deformer_bench.cli.accuracy import run_record

    return run_record(path.parent)


def _accuracy_results(path):
    from deformer_bench.cli.accuracy import saved_records

    return saved_records(path)


def _predictions(path):
    from deformer_bench.api.evaluating import read_predictions

    return read_predictions(path)


def _dataset(path):
    from deformer_bench.squad.data import load_squad

    return load_squad(path)


def _training_log(path):
    from deformer_bench.cli.accuracy import read_log

    return read_log(path)


def _passages(path):
    from deformer_bench.answer import read_passages

    return read_passages(path)


def _questions(path):
    from deformer_bench.answer import read_questions

    return read_questions(path, {"p0": "A passage."})


def _runner_result(path):
    from deformer_bench.bench.targets import parse_result

    return parse_result({"mode": "probe"}, path.read_text())


def _runner_job(path):
    from deformer_bench.bench.runner import read_job

    try:
        return read_job(io.StringIO(path.read_text()))
    except SystemExit as stop:  # the runner's way out, on the measured machine
        raise DeformerBenchError(str(stop)) from None


JSON_LINE_DUPLICATE = '{"id": "p0", "text": "t", "question": "q?", "passage_id": "p0", "x": {"dup": 1, "dup": 2}}\n'
JSON_LINE_NAN = '{"id": "p0", "text": "t", "question": "q?", "passage_id": "p0", "x": NaN}\n'
# (kind, file name, reader): the reader is the project's own, as its command calls it
JSON_KINDS = [
    ("passage cache record", "cache.json", _cache_record),
    ("graph set manifest", "manifest.json", _manifest),
    ("DeFormer settings", "deformer.json", _deformer_settings),
    ("model config", "config.json", _model_config),
    ("benchmark results", "results.json", _bench_results),
    ("evaluation record", "k3-int8.json", _evaluation_records),
    ("training record", "train_config.json", _training_record),
    ("accuracy results", "accuracy.json", _accuracy_results),
    ("predictions", "predictions.json", _predictions),
    ("dataset", "dev.json", _dataset),
    ("runner result", "result.json", _runner_result),
    ("runner job", "job.json", _runner_job),
]
JSON_LINES_KINDS = [
    ("training log", "train_log.jsonl", _training_log),
    ("passages", "passages.jsonl", _passages),
    ("questions", "questions.jsonl", _questions),
]
ALL_KINDS = [(kind, name, reader, NESTED_DUPLICATE, NESTED_NAN) for kind, name, reader in JSON_KINDS] + \
    [(kind, name, reader, JSON_LINE_DUPLICATE, JSON_LINE_NAN) for kind, name, reader in JSON_LINES_KINDS]


@pytest.mark.parametrize("kind, name, reader, duplicate, nan", ALL_KINDS, ids=[kind[0] for kind in ALL_KINDS])
def test_every_json_file_refuses_a_key_given_twice_at_any_depth_and_nan(tmp_path, kind, name, reader, duplicate,
                                                                        nan):
    path = tmp_path / name
    path.write_text(duplicate)
    with pytest.raises(DeformerBenchError, match="key 'dup' is given twice") as raised:
        reader(path)
    assert name in str(raised.value) or kind.startswith("runner")  # a runner's job and result are not files
    path.write_text(nan)
    with pytest.raises(DeformerBenchError, match="NaN is not a JSON number"):
        reader(path)


@pytest.mark.parametrize("reader, name", [(_queue, "queue.yaml"), (_profile, "profile.yaml")])
def test_every_yaml_file_refuses_a_key_given_twice_at_any_depth(tmp_path, reader, name):
    path = tmp_path / name
    path.write_text("runs:\n  - name: a\n    target: {x: 1, x: 2}\n")
    with pytest.raises(DeformerBenchError, match=r"'x' is given twice \(line 3\)") as raised:
        reader(path)
    assert name in str(raised.value)


def test_a_queue_with_runs_twice_is_refused_not_cut_to_the_last_list(tmp_path):
    """Issue 22, finding 4: the first `runs:` list was dropped without a word."""
    path = tmp_path / "queue.yaml"
    path.write_text("runs:\n  - {name: teacher}\nruns:\n  - {name: k3}\n")
    with pytest.raises(DeformerBenchError, match=r"queue .*queue.yaml: 'runs' is given twice \(lines 1 and 3\)"):
        _queue(path)


def test_the_evaluation_record_a_queue_reuses_is_read_by_the_rule(tmp_path, capsys):
    """deformer-train reads a run's eval.json to skip an evaluation already done: one that says a key twice is
    not trusted (evaluated again), and the note says why."""
    from deformer_bench.cli.train_queue import read_evaluation

    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"dataset": "d", "doc_stride": 128})[:-1] + ', "doc_stride": 64}')
    assert read_evaluation(path, {"dataset": "d"}, 64) is None
    assert "key 'doc_stride' is given twice" in capsys.readouterr().err


def test_the_default_tokenizer_folder_is_read_from_the_manifest_by_the_rule(tiny_graphs, tmp_path):
    """graph_set_source names the model folder a graph set came from before any work (so that no output lands in
    it); it reads manifest.json as load_graph_set does: a `source` given twice is no folder at all, not whichever
    one Python's json keeps, and the command then stops at the manifest, naming the key."""
    from deformer_bench.contracts.manifest import graph_set_source, load_graph_set

    source = graph_set_source(tiny_graphs)
    assert source == json.loads((tiny_graphs / "manifest.json").read_text())["model"]["source"]
    text = (tiny_graphs / "manifest.json").read_text()
    assert text.count('"source": ') == 1
    (tmp_path / "manifest.json").write_text(text.replace('"source": ', f'"source": {json.dumps(str(tmp_path))}, '
                                                                       '"source": '))
    assert graph_set_source(tmp_path) is None
    with pytest.raises(DeformerBenchError, match="key 'source' is given twice"):
        load_graph_set(tmp_path)
