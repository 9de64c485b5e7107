"""deformer-cache build | verify | info on the tiny trained student's graphs (MiniLM's tokenizer, 16 + 64 tokens)."""

import json
import subprocess
import sys

import numpy as np
import pytest


def cli(*args):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.cache", *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


@pytest.fixture
def passages(small_train_file, tmp_path):
    """The small SQuAD file's 4 paragraphs as JSON Lines: the first 3 in one file, all 4 in another."""
    document = json.loads(small_train_file.read_text())
    records = [{"id": f"p{index}", "text": paragraph["context"]}
               for index, paragraph in enumerate(document["data"][0]["paragraphs"])]
    three, four = tmp_path / "three.jsonl", tmp_path / "four.jsonl"
    three.write_text("".join(json.dumps(record) + "\n" for record in records[:3]))
    four.write_text("".join(json.dumps(record) + "\n" for record in records))
    return three, four


def test_build_append_verify_info(tiny_student_graphs, passages, small_train_file, tmp_path):
    three, four = passages
    cache = tmp_path / "cache"
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--dtype", "int8",
                               "--doc-stride", "16", "--segment-windows", "3", "--quiet")
    assert code == 0, stderr
    first = json.loads(stdout)
    assert first["passages"] == 3 and first["new_windows"] == first["cache_windows"] > 3  # several segments
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", four, "--out", cache, "--dtype", "int8",
                               "--doc-stride", "16", "--append", "--quiet")
    assert code == 0, stderr
    second = json.loads(stdout)
    assert second["new_windows"] == second["passage_windows"] - first["passage_windows"] > 0
    code, stdout, stderr = cli("verify", cache, "--graphs", tiny_student_graphs)
    assert code == 0, stderr
    assert json.loads(stdout)["windows"] == second["cache_windows"] and json.loads(stdout)["identity_checked"]
    code, stdout, _ = cli("info", cache)
    info = json.loads(stdout)
    assert info["dtype"] == "int8" and info["complete"] and info["doc_stride"] == 16
    assert info["state_bytes_per_window"] == 64 * 32 + 64 * 4  # int8 states + one float32 scale per token
    # the SQuAD file itself gives the same windows: nothing new to append
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", small_train_file, "--out", cache,
                               "--dtype", "int8", "--doc-stride", "16", "--append", "--quiet")
    assert code == 0 and json.loads(stdout)["new_windows"] == 0, stderr


def test_verify_finds_a_damaged_segment_and_builds_refuse_what_does_not_fit(tiny_student_graphs, tiny_graphs, passages,
                                                                           tmp_path):
    three, _ = passages
    cache = tmp_path / "cache"
    assert cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--doc-stride", "16",
               "--quiet")[0] == 0
    code, _, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--doc-stride", "16",
                          "--dtype", "float16", "--append", "--quiet")
    assert code == 2 and "stores float32, not float16" in stderr and "Traceback" not in stderr
    code, _, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--doc-stride", "8",
                          "--append", "--quiet")
    assert code == 2 and "doc stride 16, not 8" in stderr
    code, _, stderr = cli("verify", cache, "--graphs", tiny_graphs)
    assert code == 2 and "another lower_passage graph" in stderr
    hidden = cache / "segment-00000" / "passage_hidden.npy"
    states = np.load(hidden)
    np.save(hidden, np.zeros_like(states))  # same size, a valid file: only the checksum can tell
    code, _, stderr = cli("verify", cache)
    assert code == 2 and "segment-00000/passage_hidden.npy is damaged" in stderr and "Traceback" not in stderr
    (tmp_path / "file").write_text("x")
    code, _, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", tmp_path / "file",
                          "--doc-stride", "16", "--quiet")
    assert code == 2 and "is a file" in stderr
    code, _, stderr = cli("info", tmp_path)
    assert code == 2 and "is not a passage cache" in stderr


def test_a_build_in_shards_stores_what_one_build_stores_once_each(tiny_student_graphs, passages, tmp_path):
    from deformer_bench.passage_cache import load_passage_cache

    _, four = passages
    records = [json.loads(line) for line in four.read_text().splitlines()]
    repeated = tmp_path / "repeated.jsonl"  # p0's text again as the last passage: its windows recur in shard 5
    repeated.write_text("".join(json.dumps(record) + "\n" for record in records + [{**records[0], "id": "again"}]))
    summaries = {}
    for name, shard in (("whole", "20000"), ("sharded", "1")):
        code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", repeated, "--out", tmp_path / name,
                                   "--doc-stride", "16", "--shard-passages", shard)
        assert code == 0, stderr
        summaries[name] = json.loads(stdout)
    assert summaries["whole"]["shards"] == 1 and summaries["sharded"]["shards"] == 5
    assert "shard 5 of 5" in stderr
    assert summaries["sharded"]["cache_windows"] == summaries["whole"]["cache_windows"] \
        == summaries["sharded"]["distinct_windows"] < summaries["sharded"]["passage_windows"]
    whole, sharded = load_passage_cache(tmp_path / "whole"), load_passage_cache(tmp_path / "sharded")
    keys = whole.key_index.sorted_keys
    assert np.array_equal(keys, sharded.key_index.sorted_keys)
    assert np.array_equal(whole.passage_hidden(whole.key_index.lookup(keys)),
                          sharded.passage_hidden(sharded.key_index.lookup(keys)))
    code, _, stderr = cli("build", tiny_student_graphs, "--passages", repeated, "--out", tmp_path / "x",
                          "--shard-passages", "0")
    assert code == 2 and "--shard-passages must be at least 1" in stderr and not (tmp_path / "x").exists()


def test_a_bad_last_line_is_refused_before_any_shard_is_built(tiny_student_graphs, passages, tmp_path):
    """Passages are streamed a shard at a time, but the whole file is checked first: a repeated id or broken JSON
    on the last line stops the build before its first shard, and leaves no cache directory."""
    _, four = passages
    good = four.read_text()
    for last, message in (('{"id": "p0", "text": "again"}\n', "line 5: id 'p0' repeats line 1"),
                          ('{"id": "p9", "text": \n', "line 5 is not valid JSON"),
                          (b"\xff\xfe{}\n", "line 5: not UTF-8")):
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(good.encode() + (last if isinstance(last, bytes) else last.encode()))
        code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", bad, "--out", tmp_path / "cache",
                                   "--doc-stride", "16", "--shard-passages", "1")
        assert code == 2 and message in stderr and "Traceback" not in stderr and stdout == ""
        assert "shard 1 of" not in stderr and not (tmp_path / "cache").exists()


def test_passages_from_a_pipe_are_read_once_and_a_file_changed_midway_is_refused(tiny_student_graphs, passages,
                                                                                tmp_path):
    from deformer_bench.answer import InputFileError
    from deformer_bench.api.caching import PassageFile

    _, four = passages
    piped = subprocess.run([sys.executable, "-m", "deformer_bench.cli.cache", "build", str(tiny_student_graphs),
                            "--passages", "/dev/stdin", "--out", str(tmp_path / "piped"), "--doc-stride", "16",
                            "--quiet"], input=four.read_text(), capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", four, "--out", tmp_path / "file",
                               "--doc-stride", "16", "--quiet")
    assert code == 0, stderr
    from_pipe, from_file = json.loads(piped.stdout), json.loads(stdout)
    assert from_pipe["passages"] == from_file["passages"] == 4
    assert from_pipe["cache_windows"] == from_file["cache_windows"] > 0
    passage_file = PassageFile(four, tokenizer=None)
    assert passage_file.count == 4 and [len(shard) for shard in passage_file.shards(3)] == [3, 1]
    with open(four, "a") as handle:  # a passage added after the check
        handle.write(json.dumps({"id": "late", "text": "Added later."}) + "\n")
    with pytest.raises(InputFileError, match="4 passages when checked, 5 when read again"):
        list(passage_file.shards(3))
    # the same count, other text: told by the file's size and time
    passage_file = PassageFile(four, tokenizer=None)
    shards = passage_file.shards(3)
    next(shards)
    four.write_text(four.read_text().replace("Added later.", "Written over!"))
    with pytest.raises(InputFileError, match="changed while the build read it"):
        list(shards)


def run_in_process(main, *args) -> int:
    """A command run here, as its console script runs it (run_cli: its exit code and its stderr lines), for tests
    that interrupt it."""
    from deformer_bench.cli import cache
    from deformer_bench.cli.common import NOTHING_WRITTEN, run_cli

    interrupted = cache.INTERRUPTED if main is cache.cache_main else NOTHING_WRITTEN
    return run_cli(main, [str(arg) for arg in args], interrupted=interrupted)


def interrupted_at_window(monkeypatch, count: int):
    """lower_passage sessions that raise KeyboardInterrupt (as Ctrl-C or SIGTERM would) at their `count`th run."""
    from deformer_bench import serving

    real, runs = serving.evaluation_session, []

    class Interrupting:
        def __init__(self, path):
            self.session = real(path)

        def run(self, names, feed):
            runs.append(len(feed["passage_input_ids"]))
            if len(runs) == count:
                raise KeyboardInterrupt
            return self.session.run(names, feed)

    monkeypatch.setattr(serving, "evaluation_session", Interrupting)  # deformer-answer and deformer-eval's builds
    monkeypatch.setattr("deformer_bench.api.caching.evaluation_session", Interrupting)  # deformer-cache build's


def unfinished_build(monkeypatch, capsys, graphs, passages, cache, *options):
    """`deformer-cache build` of `passages` into `cache`, interrupted at its third window (one per segment): an
    unfinished cache of two windows. Returns the command its record names."""
    from deformer_bench.cli.cache import cache_main

    with monkeypatch.context() as patch:
        interrupted_at_window(patch, 3)
        code = run_in_process(cache_main, "build", graphs, "--passages", passages, "--out", cache, "--doc-stride",
                              "16", "--segment-windows", "1", "--batch-size", "1", "--quiet", *options)
    assert code == 130 and "interrupted: the segments finished so far are kept" in capsys.readouterr().err
    record = json.loads((cache / "cache.json").read_text())
    assert not record["complete"] and record["windows"] == 2
    return (record.get("unfinished_build") or {}).get("command")


def test_an_unfinished_build_goes_on_only_with_its_own_passages(tiny_student_graphs, passages, tmp_path, monkeypatch,
                                                               capsys):
    """A killed build, then a smaller passages file into the same --out, was recorded complete with a fraction of
    the windows, and the documented resume was refused afterwards (issue 22, finding 3)."""
    import shlex

    three, four = passages
    cache = tmp_path / "cache"
    command = unfinished_build(monkeypatch, capsys, tiny_student_graphs, four, cache)
    before = (cache / "cache.json").read_text()
    for options in ((), ("--append",), ("--dtype", "int8")):
        code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", cache,
                                   "--doc-stride", "16", "--quiet", *options)
        assert code == 2 and stdout == "" and "Traceback" not in stderr
        assert "holds an unfinished build of other windows" in stderr and f"started it: {command}" in stderr
        assert (cache / "cache.json").read_text() == before
    assert command == shlex.join(["deformer-cache", "build", str(tiny_student_graphs), "--passages", str(four),
                                  "--out", str(cache), "--doc-stride", "16"])
    # the command it names goes on with it, from another directory
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.cache", *shlex.split(command)[1:]],
                               capture_output=True, text=True, timeout=300, cwd="/")
    assert completed.returncode == 0, completed.stderr
    code, stdout, _ = cli("info", cache)
    info = json.loads(stdout)
    assert info["complete"] and info["unfinished_build"] is None and info["windows"] > 2
    assert info["windows"] == json.loads(completed.stdout)["distinct_windows"]


@pytest.mark.parametrize("builds", [KeyError, None, "abc", ["abc"], {"a": 1}, [{"passages": 3}]])
def test_info_and_append_refuse_a_record_of_another_shape_before_writing(tiny_student_graphs, passages, tmp_path,
                                                                         builds):
    """info raised AttributeError, --append KeyError after its new segment was written and listed, and verify said
    ok on such a cache (issue 22, findings 5 and 6)."""
    three, four = passages
    cache = tmp_path / "cache"
    assert cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--doc-stride", "16",
               "--quiet")[0] == 0
    record = json.loads((cache / "cache.json").read_text())
    if builds is KeyError:
        del record["builds"]
    else:
        record["builds"] = builds
    (cache / "cache.json").write_text(json.dumps(record))
    segments = sorted(path.name for path in cache.iterdir())
    for command in (("info", cache), ("verify", cache),
                    ("build", tiny_student_graphs, "--passages", four, "--out", cache, "--doc-stride", "16",
                     "--append", "--quiet")):
        code, stdout, stderr = cli(*command)
        assert code == 2 and stdout == "" and "Traceback" not in stderr, (command, stderr)
        assert "is not a valid passage cache record" in stderr and "builds" in stderr
    assert sorted(path.name for path in cache.iterdir()) == segments
    assert json.loads((cache / "cache.json").read_text()) == record


def test_verify_names_a_segment_no_entry_lists(tiny_student_graphs, passages, tmp_path):
    three, _ = passages
    cache = tmp_path / "cache"
    assert cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--doc-stride", "16",
               "--segment-windows", "2", "--quiet")[0] == 0
    record = json.loads((cache / "cache.json").read_text())
    dropped = record["segments"].pop()
    record["windows"] -= dropped["windows"]
    (cache / "cache.json").write_text(json.dumps(record))
    code, stdout, stderr = cli("verify", cache)
    assert code == 2 and f"{dropped['name']} is in its folder, and no cache.json entry lists it" in stderr
    code, stdout, _ = cli("info", cache)
    assert code == 0 and json.loads(stdout)["unlisted_segments"] == [dropped["name"]]


def test_a_variants_cache_is_built_and_verified_with_its_variant(tiny_student_graphs_int8, passages, tmp_path):
    """deformer-cache builds from a variant's lower_passage (--variant), as deformer-eval --variant reads it
    (issue 22, finding 12)."""
    three, _ = passages
    cache = tmp_path / "cache"
    code, stdout, stderr = cli("build", tiny_student_graphs_int8, "--variant", "int8", "--passages", three, "--out",
                               cache, "--doc-stride", "16", "--quiet")
    assert code == 0, stderr
    manifest = json.loads((tiny_student_graphs_int8 / "manifest.json").read_text())
    identity = json.loads(cli("info", cache)[1])["identity"]
    assert identity["variant"] == "int8"
    assert identity["lower_passage_sha256"] == manifest["variants"]["int8"]["graphs"]["lower_passage"]["sha256"]
    code, stdout, stderr = cli("verify", cache, "--graphs", tiny_student_graphs_int8, "--variant", "int8")
    assert code == 0 and json.loads(stdout)["identity_checked"], stderr
    code, _, stderr = cli("verify", cache, "--graphs", tiny_student_graphs_int8)
    assert code == 2 and "another lower_passage graph" in stderr and "(and variant)" in stderr
    code, _, stderr = cli("verify", cache, "--variant", "int8")
    assert code == 2 and "no --graphs" in stderr
    code, _, stderr = cli("build", tiny_student_graphs_int8, "--variant", "float16", "--passages", three, "--out",
                          tmp_path / "other", "--doc-stride", "16", "--quiet")
    assert code == 2 and "has no float16 variant" in stderr and not (tmp_path / "other").exists()


@pytest.fixture
def own_model_graphs(tiny_student_graphs, tiny_queue_runs, tmp_path):
    """(graph set, model folder): copies, the manifest's source (the default tokenizer) the copied model."""
    import shutil

    model, graphs = tmp_path / "model", tmp_path / "graphs"
    shutil.copytree(tiny_queue_runs[1] / "k1-kd-lrs" / "model", model)
    shutil.copytree(tiny_student_graphs, graphs)
    manifest = json.loads((graphs / "manifest.json").read_text())
    manifest["model"]["source"] = str(model)
    (graphs / "manifest.json").write_text(json.dumps(manifest))
    return graphs, model


def snapshot(root):
    return sorted((str(path.relative_to(root)), str(path.readlink()) if path.is_symlink() else path.is_dir()
                   or path.read_bytes()) for path in root.rglob("*"))


@pytest.mark.parametrize("out", ["the graph set", "the model folder", "a folder of the user's", "inside the graph set",
                                 "inside the model folder", "a folder holding the passages"])
def test_a_refused_build_leaves_nothing_behind(own_model_graphs, passages, tmp_path, out):
    """Issue 22, finding 7: a build refused for its --out left .build.lock there, which then stopped
    deformer-export --overwrite of that graph set. Every check comes before any lock or file."""
    graphs, model = own_model_graphs
    three, _ = passages
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    target = {"the graph set": graphs, "the model folder": model, "a folder of the user's": tmp_path / "mine",
              "inside the graph set": graphs / "variants" / "int8" / "mycache",
              "inside the model folder": model / "cache", "a folder holding the passages": tmp_path}[out]
    before = snapshot(tmp_path)
    code, stdout, stderr = cli("build", graphs, "--passages", three, "--out", target, "--doc-stride", "16", "--quiet")
    assert code == 2 and stderr.startswith("error: ") and "Traceback" not in stderr and stdout == "", stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("obstacle", ["a file on the way", "a broken link", "a file"])
def test_an_out_that_cannot_be_a_folder_is_one_clear_error_naming_the_obstacle(tiny_student_graphs, passages, tmp_path,
                                                                                obstacle):
    """Issue 22, finding 13: `--out afile/sub` said "afile: File exists", a dangling link "dangling/.build.lock: No
    such file or directory"."""
    three, _ = passages
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    out, expected = {"a file on the way": (tmp_path / "afile" / "sub", f"has a file in the way: {tmp_path / 'afile'}"),
                     "a broken link": (tmp_path / "dangling", f"is a broken symbolic link (to {tmp_path / 'gone'}"),
                     "a file": (tmp_path / "afile", "is a file")}[obstacle]
    before = snapshot(tmp_path)
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", out, "--doc-stride", "16",
                               "--quiet")
    assert code == 2 and f"error: --out {out} {expected}" in stderr and "Traceback" not in stderr, stderr
    assert "fix: " in stderr and snapshot(tmp_path) == before


def test_a_build_leaves_no_lock_behind(tiny_student_graphs, passages, tmp_path):
    from deformer_bench.passage_cache.lock import LOCK_FILE

    three, four = passages
    cache = tmp_path / "cache"
    assert cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--doc-stride", "16",
               "--quiet")[0] == 0
    assert not (cache / LOCK_FILE).exists()
    code, _, stderr = cli("build", tiny_student_graphs, "--passages", four, "--out", cache, "--doc-stride", "16",
                          "--dtype", "int8", "--quiet")  # refused under the lock: another dtype
    assert code == 2 and "int8" in stderr and not (cache / LOCK_FILE).exists(), stderr


@pytest.mark.parametrize("option, value, message", [
    ("--shard-passages", "99999999999999999999", "--shard-passages must be at most 1,000,000,000"),  # was a traceback
    ("--segment-windows", "99999999999999999999", "--segment-windows must be at most 1,000,000"),
    ("--batch-size", "99999999999999999999", "--batch-size must be at most 65,536"),
    ("--workers", "99999999999999999999", "--workers must be at most 1,024"),
])
def test_absurd_counts_are_refused_with_a_clear_message(tiny_student_graphs, passages, tmp_path, option, value,
                                                        message):
    """Issue 22, finding 14: counts are bounded; --shard-passages 99999999999999999999 was a ValueError traceback."""
    three, _ = passages
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", tmp_path / "x",
                               "--doc-stride", "16", option, value, "--quiet")
    assert code == 2 and message in stderr and "Traceback" not in stderr and stdout == "", stderr
    assert not (tmp_path / "x").exists()


def test_a_learned_codec_cache_is_built_described_and_verified(tiny_student_graphs, passages, tmp_path):
    """Issue 25: --dtype binary (the codec whose codebook learns from the few token states of 4 paragraphs): the
    codebook in the cache, info's bytes a token of states and of the rest, and a damaged codebook refused."""
    three, four = passages
    cache = tmp_path / "cache"
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", cache, "--dtype", "binary",
                               "--codec-settings", "group=16", "--doc-stride", "16", "--quiet")
    assert code == 0, stderr
    assert json.loads(stdout)["dtype"] == "binary"
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", four, "--out", cache, "--doc-stride", "16",
                               "--append", "--quiet")  # the cache's codec and codebook
    assert code == 0 and json.loads(stdout)["new_windows"] > 0, stderr
    info = json.loads(cli("info", cache)[1])
    assert info["dtype"] == "binary" and info["codec"]["settings"] == {"group": 16, "refit": True}
    assert info["state_bytes_per_window"] == 64 * (32 // 8 + 2 * 32 // 16)  # sign bits and two float16 scales
    headers = 128 * info["segments"] / (info["windows"] * 64)  # a .npy header a file (128 bytes), per token
    assert 8 < info["state_bytes_per_token"] <= 8 + 2 * headers  # the two files of states: signs and scales
    # uint16 ids, a window's 16-byte key and uint16 length spread over its 64 tokens (no mask): three files
    assert 2 + 18 / 64 < info["other_bytes_per_token"] <= 2 + 18 / 64 + 3 * headers + 1e-9
    assert cli("verify", cache, "--graphs", tiny_student_graphs)[0] == 0
    levels = cache / "codebook" / "levels.npy"
    levels.write_bytes(levels.read_bytes()[:-1] + b"\x00")
    code, stdout, stderr = cli("verify", cache)
    assert code == 2 and "codebook file codebook/levels.npy is damaged" in stderr and stdout == "", stderr


@pytest.mark.parametrize("options, message", [
    (["--dtype", "pq", "--codec-settings", "m=8"], "needs at least 9,984 token states"),  # 4 paragraphs: too few
    # token states for 256 centroids
    (["--dtype", "int8", "--codec-settings", "m=8"], "belong to a learned codec"),
    (["--dtype", "pq", "--codec-settings", "m=7"], "equal sub-vectors"),
    (["--dtype", "pq", "--codec-settings", "m"], "is not KEY=VALUE"),
    # issue 25's hostile check: a traceback (alpha=abc), `true` taken for 1, options that changed nothing
    (["--dtype", "pq", "--codec-settings", "m=8,transform=pca,alpha=abc"], "pq alpha=abc"),
    (["--dtype", "pq", "--codec-settings", "m=true"], "pq m=True: between 1 and 32"),
    (["--dtype", "pq", "--codec-settings", "m=8,m=16"], "codec setting m is given twice"),
    (["--dtype", "binary", "--codec-settings", "refit=maybe"], "binary refit=maybe: true or false"),
    (["--dtype", "int8", "--train-windows", "5"], "--train-windows belongs to a learned codec's training, and the "
                                                  "dtype is int8"),
    (["--train-seed", "3"], "--train-seed belongs to a learned codec's training, and the dtype is the cache's own"),
    (["--codec-settings", "m=8"], "and the dtype is the cache's own"),
    # a seed numpy takes and faiss's k-means (a C int) did not: OverflowError, a traceback, after the planning
    (["--dtype", "rq", "--codec-settings", "centroids=4", "--train-seed", "2147483648"],
     "must be at most 2,147,483,647, got 2,147,483,648: a numpy and faiss seed")])
def test_a_refused_codec_build_is_one_clear_error_and_writes_nothing(tiny_student_graphs, passages, tmp_path, options,
                                                                     message):
    three, _ = passages
    before = snapshot(tmp_path)
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", three, "--out", tmp_path / "cache",
                               "--doc-stride", "16", "--quiet", *options)
    assert code == 2 and message in stderr and "Traceback" not in stderr and stdout == "", stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("metric, options, message", [
    ("archive.npz", ["--dtype", "pq", "--codec-settings", "m=8,transform=fisher"], "is an .npz archive"),
    ("zeros.npy", ["--dtype", "pq", "--codec-settings", "m=8,transform=fisher"], "positive trace"),
    ("strings.npy", ["--dtype", "pq", "--codec-settings", "m=8,transform=fisher"], "matrix of real numbers"),
    ("folder", ["--dtype", "pq", "--codec-settings", "m=8,transform=fisher"], "is not a readable .npy array"),
    ("good.npy", ["--dtype", "rq", "--codec-settings", "centroids=16"], "learns without a metric"),
    ("good.npy", ["--dtype", "int8"], "a codec metric belongs to a learned codec"),
])
def test_a_bad_codec_metric_is_refused_before_the_passages_are_read(tiny_student_graphs, passages, tmp_path, metric,
                                                                   options, message):
    """Issue 25's hostile check: --codec-metric is checked (read, shape, numbers, trace, a codec that reads it)
    before the passages' checking pass: here a repeated id on the last line is not what is refused."""
    _, four = passages
    good = np.eye(32)
    np.savez(tmp_path / "archive.npz", metric=good)
    np.save(tmp_path / "zeros.npy", np.zeros((32, 32)))
    np.save(tmp_path / "strings.npy", np.full((32, 32), "abc"))
    np.save(tmp_path / "good.npy", good)
    (tmp_path / "folder").mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(four.read_text() + '{"id": "p0", "text": "again"}\n')
    before = snapshot(tmp_path)
    code, stdout, stderr = cli("build", tiny_student_graphs, "--passages", bad, "--out", tmp_path / "cache",
                               "--doc-stride", "16", "--quiet", "--codec-metric", tmp_path / metric, *options)
    assert code == 2 and message in stderr and "Traceback" not in stderr and stdout == "", stderr
    assert len(stderr.splitlines()) == 2 and snapshot(tmp_path) == before
