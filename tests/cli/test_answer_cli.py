import json
import subprocess
import sys

import pytest


def cli(*args):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.answer", *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def squad_as_jsonl(small_train_file, tmp_path):
    """The small SQuAD file's paragraphs as a passages file and its questions as a questions file."""
    document = json.loads(small_train_file.read_text())
    passages, questions = [], []
    for index, paragraph in enumerate(document["data"][0]["paragraphs"]):
        passages.append({"id": f"p{index}", "text": paragraph["context"]})
        questions += [{"id": qa["id"], "question": qa["question"], "passage_id": f"p{index}"} for qa in paragraph["qas"]]
    return write_jsonl(tmp_path / "passages.jsonl", passages), write_jsonl(tmp_path / "questions.jsonl", questions)


def test_answers_are_those_of_the_squad_evaluation_of_the_same_graphs(tiny_queue_runs, tiny_student_graphs,
                                                                      small_train_file, squad_as_jsonl, tmp_path):
    passages, questions = squad_as_jsonl
    evaluation = subprocess.run(
        [sys.executable, "-m", "deformer_bench.cli.eval", "--dataset", str(small_train_file), "--model",
         str(tiny_queue_runs[1] / "k1-kd-lrs" / "model"), "--onnx", str(tiny_student_graphs), "--doc-stride", "16",
         "--write-predictions", str(tmp_path / "eval-predictions.json"), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert evaluation.returncode == 0, evaluation.stderr

    # offline: the cache of every passage window; online: the questions against it
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                               "--doc-stride", "16", "--quiet")
    assert code == 0, stderr
    built = json.loads(stdout)["passage_cache"]
    assert built["built"] and built["passages"] == 4 and built["distinct_windows"] == built["cache_windows"] > 4
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions,
                               "--passage-cache", tmp_path / "cache", "--doc-stride", "16",
                               "--output", tmp_path / "answers.json", "--quiet")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert not summary["passage_cache"]["built"] and summary["passage_cache"]["cache_windows"] == built["cache_windows"]
    answers = json.loads((tmp_path / "answers.json").read_text())
    expected = json.loads((tmp_path / "eval-predictions.json").read_text())
    assert answers == expected and len(answers) == summary["answers"] > 10
    assert sum(bool(text) for text in answers.values()) > len(answers) // 2

    # checking an existing cache against the same passages builds nothing
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                               "--doc-stride", "16", "--quiet")
    assert code == 0 and not json.loads(stdout)["passage_cache"]["built"]

    # a cache of these passages, asked about another passage: refused, nothing written
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "p0", "text": "Completely different words are here."}])
    write_jsonl(tmp_path / "q.jsonl", [{"id": "x", "question": "What is here?", "passage_id": "p0"}])
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", other, "--questions", tmp_path / "q.jsonl",
                               "--passage-cache", tmp_path / "cache", "--doc-stride", "16",
                               "--output", tmp_path / "x.json", "--quiet")
    assert code == 2 and "lacks 1 of the 1 passage windows" in stderr and not (tmp_path / "x.json").exists()
    assert "--cache-miss compute" in stderr

    # --cache-miss compute: the missing window runs through lower_passage online, counted, with the answer of a
    # cache built for that passage; the cache itself is not written
    cache_files = {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*")}
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", other, "--questions", tmp_path / "q.jsonl",
                               "--passage-cache", tmp_path / "cache", "--doc-stride", "16", "--cache-miss", "compute",
                               "--output", tmp_path / "x.json", "--quiet")
    assert code == 0, stderr
    assert "1 question windows (1 questions)" in stderr and "computed online" in stderr
    assert json.loads(stdout)["passage_cache"]["cache_misses"] == {"question_windows": 1, "questions": 1}
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", other, "--questions", tmp_path / "q.jsonl",
                               "--passage-cache", tmp_path / "other-cache", "--doc-stride", "16",
                               "--output", tmp_path / "y.json", "--quiet")
    assert code == 0, stderr
    assert json.loads((tmp_path / "x.json").read_text()) == json.loads((tmp_path / "y.json").read_text())
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*")} == cache_files

    # hits and misses in one batch: the cached questions keep their answers
    mixed_passages = write_jsonl(tmp_path / "mixed.jsonl", [json.loads(line) for line in passages.read_text().splitlines()]
                                 + [{"id": "new", "text": "Completely different words are here."}])
    mixed_questions = write_jsonl(tmp_path / "mixed-q.jsonl", [json.loads(line) for line in questions.read_text().splitlines()]
                                  + [{"id": "x", "question": "What is here?", "passage_id": "new"}])
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", mixed_passages, "--questions", mixed_questions,
                               "--passage-cache", tmp_path / "cache", "--doc-stride", "16", "--cache-miss", "compute",
                               "--output", tmp_path / "mixed-answers.json", "--quiet")
    assert code == 0, stderr
    mixed = json.loads((tmp_path / "mixed-answers.json").read_text())
    assert mixed == {**expected, "x": json.loads((tmp_path / "y.json").read_text())["x"]}
    assert json.loads(stdout)["passage_cache"]["cache_misses"] == {"question_windows": 1, "questions": 1}


def test_a_question_about_an_unknown_passage_writes_nothing(tiny_student_graphs, tmp_path):
    passages = write_jsonl(tmp_path / "passages.jsonl", [{"id": "p0", "text": "A short passage."}])
    questions = write_jsonl(tmp_path / "questions.jsonl", [{"id": "q", "question": "Why?", "passage_id": "p9"}])
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions,
                               "--passage-cache", tmp_path / "cache", "--output", tmp_path / "answers.json", "--quiet")
    assert code == 2 and "questions file" in stderr and "'p9'" in stderr and "fix:" in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not (tmp_path / "cache").exists() and not (tmp_path / "answers.json").exists()


def test_graphs_of_a_model_without_a_tokenizer_need_one(tiny_graphs, tiny_with_tokenizer, tmp_path):
    passages = write_jsonl(tmp_path / "passages.jsonl", [{"id": "p0", "text": "A short passage."}])
    code, _, stderr = cli(tiny_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                          "--doc-stride", "8", "--quiet")
    assert code == 2 and "has no tokenizer" in stderr and not (tmp_path / "cache").exists()
    # MiniLM's 30,522-token vocabulary does not fit the tiny model's 120 embeddings
    code, _, stderr = cli(tiny_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                          "--tokenizer", tiny_with_tokenizer, "--doc-stride", "8", "--quiet")
    assert code == 2 and "more than the 120 the graphs embed" in stderr and not (tmp_path / "cache").exists()


def test_output_without_questions_is_refused(tiny_student_graphs, tmp_path):
    passages = write_jsonl(tmp_path / "passages.jsonl", [{"id": "p0", "text": "A short passage."}])
    code, _, stderr = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                          "--output", tmp_path / "answers.json")
    assert code == 2 and "no --questions were given" in stderr and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("bad", ["output is a directory", "cache under a file"])
def test_output_locations_are_refused_before_any_work(tiny_student_graphs, squad_as_jsonl, tmp_path, bad):
    passages, questions = squad_as_jsonl
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    output, cache = tmp_path / "answers.json", tmp_path / "cache"
    if bad == "output is a directory":
        output = tmp_path / "dir"
    else:
        cache = tmp_path / "file" / "cache"
    before = sorted(path.name for path in tmp_path.iterdir())
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions,
                               "--passage-cache", cache, "--output", output, "--doc-stride", "16", "--quiet")
    assert code == 2 and stderr.startswith("error: ") and "Traceback" not in stderr, stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no DIR.partial, no cache


@pytest.mark.parametrize("target", ["passages", "questions", "cache file"])
def test_output_may_not_overwrite_an_input(tiny_student_graphs, squad_as_jsonl, tmp_path, target):
    passages, questions = squad_as_jsonl
    built = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                "--doc-stride", "16", "--quiet")
    assert built[0] == 0, built[2]
    output = {"passages": passages, "questions": questions,
              "cache file": tmp_path / "cache" / "cache.json"}[target]
    before = output.read_bytes()
    code, _, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions,
                          "--passage-cache", tmp_path / "cache", "--output", output, "--doc-stride", "16", "--quiet")
    assert code == 2 and "--output" in stderr and "Traceback" not in stderr, stderr
    assert output.read_bytes() == before


def test_answering_imports_no_torch(tiny_student_graphs, squad_as_jsonl, tmp_path):
    """Serving needs onnxruntime, numpy and a tokenizer, not torch (issue 12): a whole answer run, then a check."""
    passages, questions = squad_as_jsonl
    code = ("import sys\nfrom deformer_bench.cli.answer import main\ntry:\n    "
            f"main([{str(tiny_student_graphs)!r}, '--passages', {str(passages)!r}, '--questions', "
            f"{str(questions)!r}, '--passage-cache', {str(tmp_path / 'cache')!r}, '--output', "
            f"{str(tmp_path / 'answers.json')!r}, '--doc-stride', '16', '--quiet'])\n"
            "except SystemExit as exit_:\n    assert exit_.code == 0, exit_.code\n"
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert json.loads((tmp_path / "answers.json").read_text())


def test_a_cache_cut_with_another_stride_is_named_not_counted_as_misses(tiny_student_graphs, squad_as_jsonl, tmp_path):
    passages, questions = squad_as_jsonl
    code, _, stderr = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                          "--doc-stride", "16", "--quiet")
    assert code == 0, stderr
    for rule in ("refuse", "compute"):
        code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions,
                                   "--passage-cache", tmp_path / "cache", "--doc-stride", "32", "--cache-miss", rule,
                                   "--output", tmp_path / "answers.json", "--quiet")
        assert code == 2 and "was cut with doc stride 16, not 32" in stderr and "--doc-stride 16" in stderr
        assert not (tmp_path / "answers.json").exists()
    code, _, stderr = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", tmp_path / "cache",
                          "--doc-stride", "16", "--cache-miss", "compute", "--quiet")
    assert code == 2 and "no --questions were given" in stderr


def test_a_gzipped_squad_file_is_a_passages_file_as_for_deformer_cache(tiny_student_graphs, small_train_file,
                                                                        squad_as_jsonl, tmp_path):
    """Issue 22, finding 13: `--passages dev.json.gz` said "not UTF-8 (byte 0x8b)"; deformer-cache build reads
    such a file as passages p00000, p00001, ...: so does deformer-answer now."""
    import gzip

    (tmp_path / "dev.json.gz").write_bytes(gzip.compress(small_train_file.read_bytes()))
    _, questions = squad_as_jsonl
    renamed = [{**record, "passage_id": f"p{int(record['passage_id'][1:]):05d}"}
               for record in map(json.loads, questions.read_text().splitlines())]
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", tmp_path / "dev.json.gz", "--questions",
                               write_jsonl(tmp_path / "renamed.jsonl", renamed), "--passage-cache", tmp_path / "cache",
                               "--doc-stride", "16", "--output", tmp_path / "answers.json", "--quiet")
    assert code == 0, stderr
    assert json.loads(stdout)["passage_cache"]["passages"] == 4
    assert len(json.loads((tmp_path / "answers.json").read_text())) == len(renamed)


def test_an_interrupted_answer_removes_the_cache_it_started_and_keeps_one_it_went_on_with(
        tiny_student_graphs, squad_as_jsonl, tmp_path, monkeypatch, capsys):
    """Ctrl-C printed "interrupted: nothing was written" and left the new cache, unfinished (issue 22, finding 8)."""
    import functools

    from deformer_bench import serving
    from deformer_bench.cli.answer import answer_main
    from tests.cli.test_cache_cli import interrupted_at_window, run_in_process, unfinished_build

    passages, questions = squad_as_jsonl
    cache = tmp_path / "cache"
    for asked in ((), ("--questions", questions, "--output", tmp_path / "answers.json")):
        with monkeypatch.context() as patch:
            interrupted_at_window(patch, 3)  # after two segments of one window were written and listed
            patch.setattr(serving, "build_passage_cache",
                          functools.partial(serving.build_passage_cache, segment_windows=1))
            code = run_in_process(answer_main, tiny_student_graphs, "--passages", passages, "--passage-cache",
                                  cache, "--doc-stride", "16", "--batch-size", "1", "--quiet", *asked)
        assert code == 130 and capsys.readouterr().err == "interrupted: nothing was written\n"
        assert not cache.exists() and not (tmp_path / "answers.json").exists()
    # another build's unfinished cache of these passages: this run goes on with it, and an interrupt keeps it
    unfinished_build(monkeypatch, capsys, tiny_student_graphs, passages, cache)
    with monkeypatch.context() as patch:
        interrupted_at_window(patch, 3)
        code = run_in_process(answer_main, tiny_student_graphs, "--passages", passages, "--passage-cache", cache,
                              "--doc-stride", "16", "--batch-size", "1", "--quiet")
    assert code == 130 and f"the unfinished passage cache {cache} keeps the segments" in capsys.readouterr().err
    record = json.loads((cache / "cache.json").read_text())
    assert not record["complete"] and record["windows"] == 2  # what it had (this run's segment was not finished)
    assert sorted(path.name for path in cache.iterdir() if not path.name.startswith(".")) == [
        "cache.json", "segment-00000", "segment-00001"]


def test_another_builds_unfinished_cache_goes_on_only_with_its_passages_in_its_dtype(
        tiny_student_graphs, squad_as_jsonl, tmp_path, monkeypatch, capsys):
    """deformer-answer over an unfinished int8 cache said "fix: build with --dtype int8" (it has no --dtype), and
    over another build's unfinished cache of other passages marked it complete (issue 22, findings 3 and 11)."""
    from tests.cli.test_cache_cli import unfinished_build

    passages, questions = squad_as_jsonl
    cache = tmp_path / "cache"
    command = unfinished_build(monkeypatch, capsys, tiny_student_graphs, passages, cache, "--dtype", "int8")
    before = (cache / "cache.json").read_text()
    fewer = write_jsonl(tmp_path / "fewer.jsonl", [json.loads(passages.read_text().splitlines()[0])])
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", fewer, "--passage-cache", cache, "--doc-stride",
                               "16", "--quiet")
    assert code == 2 and "holds an unfinished build of other windows" in stderr, stderr
    assert "build with --dtype" not in stderr and (cache / "cache.json").read_text() == before
    assert "--dtype int8" in command and f"started it: {command}" in stderr
    code, stdout, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions,
                               "--passage-cache", cache, "--doc-stride", "16", "--output", tmp_path / "answers.json",
                               "--quiet")
    assert code == 0, stderr
    record = json.loads((cache / "cache.json").read_text())
    assert record["complete"] and record["dtype"] == "int8" and len(record["builds"]) == 1


def test_a_cache_lacking_windows_names_commands_that_exist(tiny_student_graphs, squad_as_jsonl, tmp_path):
    """Every hint names options of the command that prints it, or names the other command it means (issue 22,
    finding 11)."""
    import shlex

    passages, questions = squad_as_jsonl
    cache = tmp_path / "cache"
    first = write_jsonl(tmp_path / "first.jsonl", [json.loads(passages.read_text().splitlines()[0])])
    assert cli(tiny_student_graphs, "--passages", first, "--passage-cache", cache,
               "--doc-stride", "16", "--quiet")[0] == 0
    code, _, stderr = cli(tiny_student_graphs, "--passages", passages, "--passage-cache", cache, "--doc-stride",
                          "16", "--quiet")
    assert code == 2 and "lacks" in stderr and "--cache-miss" not in stderr  # no --questions: no --cache-miss
    append = shlex.join(["deformer-cache", "build", str(tiny_student_graphs), "--passages", str(passages), "--out",
                         str(cache), "--doc-stride", "16", "--append"])
    assert f"add these passages to it: {append}; or give a new --passage-cache directory" in stderr
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.cache", *shlex.split(append)[1:],
                                "--quiet"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    code, _, stderr = cli(tiny_student_graphs, "--passages", passages, "--questions", questions, "--passage-cache",
                          cache, "--doc-stride", "16", "--quiet")
    assert code == 0, stderr


@pytest.fixture
def graphs_of_own_model(tiny_student_graphs, tiny_queue_runs, tmp_path):
    """(graph set, model folder): a copy of the student's graph set whose manifest's source (the default
    tokenizer) is a copy of its model folder, so that a test may attack the folder without harming the shared one."""
    import shutil

    model, graphs = tmp_path / "model", tmp_path / "graphs"
    shutil.copytree(tiny_queue_runs[1] / "k1-kd-lrs" / "model", model)
    shutil.copytree(tiny_student_graphs, graphs)
    manifest = json.loads((graphs / "manifest.json").read_text())
    manifest["model"]["source"] = str(model)
    (graphs / "manifest.json").write_text(json.dumps(manifest))
    return graphs, model


@pytest.mark.parametrize("target", ["model.safetensors", "vocab.txt", "tokenizer.json", "config.json from inside",
                                    "a new file in it", "through a link to it", "relative with .."])
def test_output_may_not_land_in_the_default_tokenizer_folder(graphs_of_own_model, squad_as_jsonl, tmp_path,
                                                              monkeypatch, target):
    """Issue 22, finding 1: --output MODEL/model.safetensors overwrote the weights with an answers file (exit 0):
    MODEL, found through the graph set's manifest as the default tokenizer, is as much an input as a named one."""
    graphs, model = graphs_of_own_model
    passages, questions = squad_as_jsonl
    (tmp_path / "link").symlink_to(model)
    output = {"model.safetensors": model / "model.safetensors", "vocab.txt": model / "vocab.txt",
              "tokenizer.json": model / "tokenizer.json", "config.json from inside": "config.json",
              "a new file in it": model / "answers.json", "through a link to it": tmp_path / "link" / "vocab.txt",
              "relative with ..": f"../{model.name}/./vocab.txt"}[target]
    before = {path.name: path.read_bytes() for path in model.iterdir()}
    monkeypatch.chdir(model)
    code, stdout, stderr = cli(graphs, "--passages", passages, "--questions", questions, "--passage-cache",
                               tmp_path / "cache", "--output", output, "--doc-stride", "16", "--quiet")
    assert code == 2 and "tokenizer directory" in stderr and "Traceback" not in stderr, stderr
    assert {path.name: path.read_bytes() for path in model.iterdir()} == before
    assert not (tmp_path / "cache").exists()


def test_a_new_passage_cache_may_not_go_inside_an_input(graphs_of_own_model, squad_as_jsonl, tmp_path):
    graphs, model = graphs_of_own_model
    passages, _ = squad_as_jsonl
    for cache in (model / "cache", graphs / "variants" / "int8" / "mycache", tmp_path):  # tmp_path holds the passages
        code, _, stderr = cli(graphs, "--passages", passages, "--passage-cache", cache, "--doc-stride", "16", "--quiet")
        assert code == 2 and "--passage-cache" in stderr and "Traceback" not in stderr, stderr
        assert not (model / "cache").exists() and not (graphs / "variants").exists()
