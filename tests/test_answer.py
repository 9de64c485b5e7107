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
    from deformer_bench.api.caching import PassageFile

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

    from deformer_bench.api.caching import PassageFile

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(gzip.compress(json.dumps(SQUAD).encode())))
    writer.start()
    built = PassageFile(fifo, minilm_tokenizer)
    writer.join()
    assert dict(built.shards(10).__next__()) == SQUAD_PASSAGES


# ---- unique ids, checked a batch at a time over 16-byte digests (issue 25: ~16 bytes an id, not a dict's ~130) ----
def write_passages(path, ids, texts=None):
    """A passages file of these ids (line n holds ids[n - 1]), each with a text; gzip-compressed if named .gz."""
    import gzip
    import json

    lines = "".join(json.dumps({"id": passage_id, "text": "A passage." if texts is None else texts[number]}) + "\n"
                    for number, passage_id in enumerate(ids))
    path.write_bytes(gzip.compress(lines.encode()) if path.suffix == ".gz" else lines.encode())
    return path


def repeat_error(path, number, passage_id, first) -> str:
    """The whole message a repeated id gets, as before the batches."""
    return f"passages file {path}, line {number}: id {passage_id!r} repeats line {first}"


@pytest.fixture
def batches_of_4(monkeypatch):
    """Batches of 4 lines, so that a few lines hold several batches (raising=False: these tests run unchanged
    against the code before the batches, which passed them)."""
    import deformer_bench.answer as answer

    monkeypatch.setattr(answer, "ID_BATCH_LINES", 4, raising=False)


@pytest.mark.parametrize("name", ["passages.jsonl", "passages.jsonl.gz"])
@pytest.mark.parametrize("repeated, number, first", [
    (3, 4, 3),      # lines 3 and 4: one batch
    (3, 6, 3),      # lines 3 and 6: the next batch
    (1, 4000, 1),   # lines 1 and 4000: a thousand batches apart
    (4, 5, 4),      # the last line of a batch and the first of the next
])
def test_a_repeated_id_is_refused_at_its_line_naming_its_first(tmp_path, batches_of_4, name, repeated, number,
                                                               first):
    ids = [f"enwiki-{line}-0" for line in range(1, 4001)]
    ids[number - 1] = ids[repeated - 1]
    path = write_passages(tmp_path / name, ids)
    with pytest.raises(InputFileError) as raised:
        read_passages(path)
    assert raised.value.message == repeat_error(path, number, ids[repeated - 1], first)
    assert raised.value.hint == "give every one of the passages its own id"


def test_an_id_in_an_earlier_batch_and_twice_in_this_one_names_its_first_line(tmp_path, batches_of_4):
    """Lines 2, 6 and 7 hold one id: line 6 repeats line 2 (read again from the file), not line 7 line 6."""
    ids = ["a", "x", "b", "c", "d", "x", "x", "e"]
    path = write_passages(tmp_path / "passages.jsonl", ids)
    with pytest.raises(InputFileError) as raised:
        read_passages(path)
    assert raised.value.message == repeat_error(path, 6, "x", 2)


def test_the_first_of_two_repeats_is_refused_when_both_fall_in_one_batch(tmp_path):
    """Lines 5 and 6 repeat lines 2 and 1: line 5 is refused (the file's order), not line 6 (the first id)."""
    ids = ["a", "b", "c", "d", "b", "a"]
    path = write_passages(tmp_path / "passages.jsonl", ids)
    with pytest.raises(InputFileError) as raised:
        read_passages(path)
    assert raised.value.message == repeat_error(path, 5, "b", 2)


@pytest.mark.parametrize("lines, message", [
    # a repeat before a bad line of its batch: the repeat (the bad line waits until the batch is checked)
    (['{"id": "a", "text": "A."}', '{"id": "a", "text": "B."}', "not json"], "line 2: id 'a' repeats line 1"),
    (['{"id": "a", "text": "A."}', '{"id": "a", "text": "B."}', '{"id": 7}'], "line 2: id 'a' repeats line 1"),
    # a bad line before a repeat: the bad line
    (['{"id": "a", "text": "A."}', "not json", '{"id": "a", "text": "B."}'], "line 2 is not valid JSON"),
    # a passage of no text (refused by iter_passages, after the ids) before a repeat, and after one
    (['{"id": "a", "text": "A."}', '{"id": "b", "text": " "}', '{"id": "a", "text": "B."}'],
     "line 2: passage 'b' has no text"),
    (['{"id": "a", "text": "A."}', '{"id": "a", "text": "B."}', '{"id": "b", "text": " "}'],
     "line 2: id 'a' repeats line 1"),
])
def test_errors_come_in_file_order_within_a_batch(tmp_path, lines, message):
    (tmp_path / "passages.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError, match=message):
        read_passages(tmp_path / "passages.jsonl")


def test_a_question_before_a_repeat_in_its_batch_is_refused_first(tmp_path):
    """read_questions refuses an unknown passage at line 1 before line 3's repeated id."""
    (tmp_path / "questions.jsonl").write_text(
        '{"id": "q1", "question": "Why?", "passage_id": "p9"}\n{"id": "q2", "question": "Why?", "passage_id": "p0"}\n'
        '{"id": "q2", "question": "How?", "passage_id": "p0"}\n')
    with pytest.raises(InputFileError, match="line 1: question 'q1' asks about passage 'p9'"):
        read_questions(tmp_path / "questions.jsonl", {"p0": "A passage."})


def test_a_digest_collision_does_not_refuse_distinct_ids(tmp_path, batches_of_4, monkeypatch):
    """Every id given one digest: distinct ids all pass (each candidate is compared with the earlier lines' ids),
    and a real repeat is still refused at its line, naming its first."""
    import deformer_bench.answer as answer

    monkeypatch.setattr(answer, "id_digest", lambda passage_id: bytes(16))
    ids = [f"p{line}" for line in range(1, 11)]
    path = write_passages(tmp_path / "passages.jsonl", ids)
    assert list(read_passages(path)) == ids
    ids[8] = "p3"
    write_passages(path, ids)
    with pytest.raises(InputFileError) as raised:
        read_passages(path)
    assert raised.value.message == repeat_error(path, 9, "p3", 3)


def test_a_repeat_far_apart_in_a_pipe_is_found_in_the_bytes_held(tmp_path, batches_of_4):
    """A pipe is read once and held: the earlier line is read again from what is held."""
    import os
    import threading

    from deformer_bench.api.caching import PassageFile

    ids = [f"p{line}" for line in range(1, 21)]
    ids[17] = "p2"
    content = write_passages(tmp_path / "passages.jsonl", ids).read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(content))
    writer.start()
    try:
        with pytest.raises(InputFileError) as raised:
            PassageFile(fifo, None)
    finally:
        writer.join()
    assert raised.value.message == repeat_error(fifo, 18, "p2", 2)


def test_checking_ids_holds_under_50_bytes_a_passage(tmp_path, monkeypatch):
    """The checking pass over 100,000 passages (ids like 'enwiki-12345678-3'): its peak traced memory is under
    50 bytes a passage (the digests, their merges and one batch of records); a dict of the ids took ~130."""
    import tracemalloc

    import deformer_bench.answer as answer

    monkeypatch.setattr(answer, "ID_BATCH_LINES", 1024, raising=False)  # the dict before it: ~130 bytes an id
    count = 100_000
    path = write_passages(tmp_path / "passages.jsonl", [f"enwiki-{12345678 + line}-3" for line in range(count)],
                          ["A passage."] * count)
    source = answer.passages_file(path)
    tracemalloc.start()
    try:
        read = sum(1 for _ in answer.iter_jsonl(source, ("id", "text")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == count
    assert peak / count < 50, f"{peak / count:.1f} bytes a passage"
