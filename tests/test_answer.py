import pytest

from deformer_bench.answer import InputFileError, passage_examples, read_passages, read_questions

PASSAGE = '{"id": "p0", "text": "A passage."}\n'


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from deformer_bench.model import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())


def test_featurize_survives_a_passage_of_no_tokens(minilm_tokenizer):
    """Zero-width characters only: no tokens, one window of [SEP] alone, no crash (library callers)."""
    from deformer_bench.squad.data import Example
    from deformer_bench.squad.features import featurize

    features = featurize([Example("q", "t", "\u200b\u200b", "Why?", ())], minilm_tokenizer, 8, 16, 4, progress=False)
    assert len(features) == 1 and features.passage_attention_mask[0].sum() == 1
    assert (features.token_offsets[0] == -1).all()


@pytest.mark.parametrize("passages, message", [
    (PASSAGE + '{"id": "p0", "text": "Again."}\n', "line 2: id 'p0' repeats line 1"),
    (PASSAGE + "not json\n", r"line 2 is not valid JSON \(Expecting value at column 1\)"),
    ('{"id": "p0", "body": "A passage."}\n', "line 1: expected an object with string 'id', 'text'"),
    ('{"id": 7, "text": "A passage."}\n', "line 1: expected an object with string 'id', 'text'"),
    ('["p0", "A passage."]\n', "line 1: expected an object"),
    ('{"id": "p0", "text": "  "}\n', "line 1: passage 'p0' has no text"),
    (PASSAGE + '{"id": "p1", "text": "\\u200b\\u200b"}\n', "line 2: passage 'p1' has no text"),
    ("\n\n", "holds no passages"),
])
def test_bad_passages_files_name_the_line(tmp_path, passages, message, minilm_tokenizer):
    (tmp_path / "passages.jsonl").write_text(passages)
    with pytest.raises(InputFileError, match=message) as raised:
        read_passages(tmp_path / "passages.jsonl", minilm_tokenizer)
    assert raised.value.hint


@pytest.mark.parametrize("questions, message", [
    ('{"id": "q", "question": "Why?", "passage_id": "p9"}\n', "line 1: question 'q' asks about passage 'p9', which"),
    ('{"id": "q", "question": " ", "passage_id": "p0"}\n', "line 1: question 'q' is empty"),
    ('{"id": "q", "question": "\\u200b\\u2060", "passage_id": "p0"}\n', "line 1: question 'q' is empty"),
    ('{"id": "q", "question": "When \\ud800?", "passage_id": "p0"}\n', "line 1: a string holds an unpaired surrogate"),
    ('{"id": "q", "question": "Why?"}\n', "expected an object with string 'id', 'question', 'passage_id'"),
    ('{"id": "q", "question": "Why?", "passage_id": "p0"}\n' * 2, "line 2: id 'q' repeats line 1"),
])
def test_bad_questions_files_name_the_line(tmp_path, questions, message, minilm_tokenizer):
    (tmp_path / "questions.jsonl").write_text(questions)
    with pytest.raises(InputFileError, match=message):
        read_questions(tmp_path / "questions.jsonl", {"p0": "A passage."}, minilm_tokenizer)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="cannot read the passages file .*: it does not exist"):
        read_passages(tmp_path / "absent.jsonl")


def test_questions_become_examples_over_their_passage_text(tmp_path):
    (tmp_path / "passages.jsonl").write_text(PASSAGE + '\n{"id": "p1", "text": "Another one."}\n')
    (tmp_path / "questions.jsonl").write_text('{"id": "q1", "question": "Which?", "passage_id": "p1", "extra": 1}\n')
    passages = read_passages(tmp_path / "passages.jsonl")
    assert passages == {"p0": "A passage.", "p1": "Another one."}
    [example] = read_questions(tmp_path / "questions.jsonl", passages)
    assert (example.id, example.question, example.context, example.answers) == ("q1", "Which?", "Another one.", ())
    assert [(e.id, e.question, e.context) for e in passage_examples(passages)] == [
        ("p0", "", "A passage."), ("p1", "", "Another one.")]


def test_line_separators_inside_json_strings_and_a_byte_order_mark(tmp_path):
    """U+2028 and U+0085 may stand unescaped in JSON strings (ensure_ascii=False writes them so): they are text,
    not line ends; a UTF-8 byte-order mark is read past; CRLF line ends work."""
    import json

    lines = [json.dumps({"id": "p0", "text": "One\u2028two\u0085three."}, ensure_ascii=False),
             json.dumps({"id": "p1", "text": "Four."})]
    (tmp_path / "passages.jsonl").write_text("\ufeff" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    assert read_passages(tmp_path / "passages.jsonl") == {"p0": "One\u2028two\u0085three.", "p1": "Four."}
    # a lone \r ends a line too (as Python's text files read it; JSON strings cannot hold a raw one)
    (tmp_path / "passages.jsonl").write_bytes(b'{"id": "p0", "text": "A."}\r{"id": "p1", "text": "B."}\r\r\n')
    assert read_passages(tmp_path / "passages.jsonl") == {"p0": "A.", "p1": "B."}
    (tmp_path / "passages.jsonl").write_bytes(b'{"id": "p0", "text": "A."}\r\r\n{"id": "p1", "text": "\xffB."}\n')
    with pytest.raises(InputFileError, match=r"line 3: not UTF-8 text \(byte 0xff at offset 22 of the line: invalid start byte\)"):
        read_passages(tmp_path / "passages.jsonl")


# ---- what a passages file is: one rule for deformer-answer and deformer-cache (issue 22, finding 13) ----
SQUAD = {"version": "1.1", "data": [{"title": "T", "paragraphs": [
    {"context": "Paris is in France.", "qas": [{"id": "q1", "question": "Where?", "answers": [
        {"text": "France", "answer_start": 12}]}]},
    {"context": "Rome is in Italy.", "qas": [{"id": "q2", "question": "Where?", "answers": [
        {"text": "Italy", "answer_start": 11}]}]}]}]}
SQUAD_PASSAGES = {"p00000": "Paris is in France.", "p00001": "Rome is in Italy."}
JSON_LINES = '{"id": "a", "text": "Paris is in France."}\n{"id": "b", "text": "Rome is in Italy."}\n'


def passages_files(folder):
    """{file: passages}: each format in each form a user may give it, named as a user may name it."""
    import gzip
    import json

    squad = json.dumps(SQUAD).encode()
    pretty = json.dumps(SQUAD, indent=2).encode()
    lines = JSON_LINES.encode()
    files = {"squad.json": (squad, SQUAD_PASSAGES), "pretty.json": (pretty, SQUAD_PASSAGES),
             "dev.json.gz": (gzip.compress(squad), SQUAD_PASSAGES), "squad.jsonl": (squad, SQUAD_PASSAGES),
             "lines.jsonl": (lines, {"a": "Paris is in France.", "b": "Rome is in Italy."}),
             "lines.json": (lines, {"a": "Paris is in France.", "b": "Rome is in Italy."}),
             "lines.jsonl.gz": (gzip.compress(lines), {"a": "Paris is in France.", "b": "Rome is in Italy."}),
             "gzip-named.txt": (gzip.compress(lines), {"a": "Paris is in France.", "b": "Rome is in Italy."})}
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {folder / name: passages for name, (_, passages) in files.items()}


def test_both_commands_read_every_passages_file_alike(tmp_path, minilm_tokenizer):
    """deformer-answer read JSON Lines from a .json file where deformer-cache build wanted SQuAD, and neither read
    a gzip file unless it was SQuAD named .gz: now the content decides, the same for both."""
    from deformer_bench.cli.cache import PassageFile

    for path, expected in passages_files(tmp_path).items():
        assert read_passages(path, minilm_tokenizer) == expected, path.name
        built = PassageFile(path, minilm_tokenizer)
        assert dict(passage for shard in built.shards(1) for passage in shard) == expected, path.name
        assert built.count == len(expected)


def test_both_commands_describe_a_passages_file_alike():
    from deformer_bench.answer import PASSAGES_FILE
    from deformer_bench.cli.answer import build_parser as answer_parser
    from deformer_bench.cli.cache import build_parser as cache_parser

    def passages_help(parser):
        return next(action.help for action in parser._actions if action.dest == "passages")

    build = cache_parser()._subparsers._group_actions[0].choices["build"]
    assert passages_help(answer_parser()) == passages_help(build) == PASSAGES_FILE
    assert "SQuAD v1.1 document" in PASSAGES_FILE and "gzip" in PASSAGES_FILE


@pytest.mark.parametrize("data, message, fix", [
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "is a zip archive, not UTF-8 text", "extract the file"),
    (b"\xfd7zXZ\x00\x00\x04", "is xz-compressed", "unxz"),
    (b"\x93NUMPY\x01\x00v\x00", r"is a NumPy array \(.npy\)", "text file"),
    ('{"id": "p0", "text": "A."}\n'.encode("utf-16"), "is UTF-16 text", "UTF-8"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "is gzip-compressed, but damaged or cut off", "again"),
    (b"", "holds no passages", "JSON Lines"),
])
def test_common_wrong_files_are_named_with_what_to_give(tmp_path, data, message, fix):
    (tmp_path / "passages.json").write_bytes(data)
    with pytest.raises(InputFileError, match=message) as raised:
        read_passages(tmp_path / "passages.json")
    assert fix in raised.value.hint


def test_a_device_is_not_read_forever():
    with pytest.raises(InputFileError, match="passages file /dev/zero is a device, not a file"):
        read_passages("/dev/zero")


def test_a_gzip_of_something_else_is_named_as_gzip(tmp_path):
    import gzip

    (tmp_path / "passages.gz").write_bytes(gzip.compress(b"\x93NUMPY\x01\x00"))
    with pytest.raises(InputFileError, match=r"\(gzip-compressed\) is a NumPy array"):
        read_passages(tmp_path / "passages.gz")


def test_a_squad_document_as_questions_says_where_squad_questions_go(tmp_path):
    import json

    (tmp_path / "dev.json").write_text(json.dumps(SQUAD))
    with pytest.raises(InputFileError, match="is a SQuAD document") as raised:
        read_questions(tmp_path / "dev.json", SQUAD_PASSAGES)
    assert "deformer-eval" in raised.value.hint


def test_a_squad_passages_file_from_a_pipe_is_read_once(tmp_path, minilm_tokenizer):
    import gzip
    import json
    import os
    import threading

    from deformer_bench.cli.cache import PassageFile

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(gzip.compress(json.dumps(SQUAD).encode())))
    writer.start()
    built = PassageFile(fifo, minilm_tokenizer)
    writer.join()
    assert dict(built.shards(10).__next__()) == SQUAD_PASSAGES
