"""cache.json is checked whole at open: every field, of every wrong type, is one PassageCacheError before anything
is read or written (issue 22, findings 5 and 6)."""

import json

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.passage_cache import build_passage_cache, load_passage_cache
from deformer_bench.passage_cache.schema import segment_files
from deformer_bench.passage_cache.cache_files import expected_arrays
from deformer_bench.serving import evaluation_session
from deformer_bench.contracts.manifest import load_graph_set

WRONG = [None, True, -1, 0, 2.5, float("nan"), "x", "\x1b[2J", "0" * 64, [], ["x"], [{}], {}, {"a": 1}]


def leaf_paths(value, path=()):
    """Every path into a JSON value: each object key, each list item, and the value itself."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, path + (index,))


def replaced(record, path, value):
    record = json.loads(json.dumps(record))
    if not path:
        return value
    holder = record
    for key in path[:-1]:
        holder = holder[key]
    if value is KeyError:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return record


@pytest.fixture(scope="module")
def int8_cache(tiny_graphs, tmp_path_factory):
    """A complete int8 cache of two segments, two builds (the second an append), a Ray-engine-free record."""
    graph_set = load_graph_set(tiny_graphs)
    ids = np.random.default_rng(0).integers(1, 120, size=(3, 24))
    directory = tmp_path_factory.mktemp("schema") / "cache"
    build_passage_cache(graph_set, ids[:2], np.ones_like(ids[:2]), directory, evaluation_session, progress=False,
                        dtype="int8", doc_stride=16)
    build_passage_cache(graph_set, ids, np.ones_like(ids), directory, evaluation_session, progress=False,
                        dtype="int8", append=True)
    return graph_set, directory, ids


def test_every_field_of_every_wrong_type_is_refused_at_open_and_an_append_writes_nothing(int8_cache):
    from deformer_bench.api.caching import cache_info

    graph_set, directory, ids = int8_cache
    original = (directory / "cache.json").read_text()
    record = json.loads(original)
    assert record["format_version"] == 5 and len(record["segments"]) == 2 and len(record["builds"]) == 2
    refused = accepted = 0
    try:
        for path in list(leaf_paths(record)):
            for value in WRONG + ([KeyError] if path else []):
                tampered = replaced(record, path, value)
                if tampered == record:
                    continue
                (directory / "cache.json").write_text(json.dumps(tampered))
                try:
                    cache = load_passage_cache(directory)
                except PassageCacheError as error:
                    assert "cache.json" in str(error) and error.hint, (path, value)
                    refused += 1
                    # what info and --append relied on: refused before a segment is written or the record changes
                    with pytest.raises(PassageCacheError):
                        cache_info(directory)
                    with pytest.raises(PassageCacheError):
                        build_passage_cache(graph_set, ids[2:, ::-1].copy(), np.ones_like(ids[2:]), directory,
                                            evaluation_session, progress=False, append=True)
                    assert (directory / "cache.json").read_text() == json.dumps(tampered)
                    assert sorted(p.name for p in directory.iterdir() if p.name.startswith("segment")) == [
                        entry["name"] for entry in record["segments"]]
                    continue
                accepted += 1  # a value the schema allows there (a null stride, a build count of 0, ...): the
                # commands work, or refuse it in words (a sha256 of zeros: at the segment's first read)
                for use in (lambda: cache_info(directory),
                            lambda: cache.passage_hidden(cache.rows(ids, np.ones_like(ids))),
                            lambda: build_passage_cache(graph_set, ids, np.ones_like(ids), directory,
                                                        evaluation_session, progress=False, append=True)):
                    try:
                        use()
                    except PassageCacheError:
                        pass
    finally:
        (directory / "cache.json").write_text(original)
    assert refused > 400 and accepted < refused // 10, (refused, accepted)


@pytest.mark.parametrize("builds", [KeyError, None, "abc", ["abc"], {"a": 1}, [{"passages": 3}]])
def test_builds_of_another_shape_name_the_field(int8_cache, builds, tmp_path):
    """The issue's cases: info raised AttributeError, --append KeyError after writing a segment."""
    import shutil

    graph_set, directory, ids = int8_cache
    copy = tmp_path / "cache"
    shutil.copytree(directory, copy)
    record = json.loads((copy / "cache.json").read_text())
    (copy / "cache.json").write_text(json.dumps(replaced(record, ("builds",), builds)))
    with pytest.raises(PassageCacheError, match=r"record: 'cache\.json(' lacks builds|\.builds)"):
        load_passage_cache(copy)


def test_fields_that_disagree_are_refused(int8_cache, tmp_path):
    import shutil

    _, directory, _ = int8_cache
    record = json.loads((directory / "cache.json").read_text())
    first = record["segments"][0]
    cases = {"windows": dict(record, windows=record["windows"] + 1),
             "twice": dict(record, segments=[first, first], windows=2 * first["windows"]),
             "files of a float32 segment": dict(record, dtype="float32"),
             "complete without a build": dict(record, complete=False),
             "a finished build unfinished": dict(record, unfinished_build={
                 "windows_sha256": "0" * 64, "windows": 1, "append": False, "command": None})}
    messages = {"windows": "is 4, and its segments hold 3", "twice": "lists a segment twice",
                "files of a float32 segment": "must name the files of a float32 segment",
                "complete without a build": "must describe the build that was started",
                "a finished build unfinished": "can only be an append"}
    for name, tampered in cases.items():
        copy = tmp_path / name
        shutil.copytree(directory, copy)
        (copy / "cache.json").write_text(json.dumps(tampered))
        with pytest.raises(PassageCacheError, match=messages[name]):
            load_passage_cache(copy)


@pytest.mark.parametrize("version", [3, 4])
def test_a_finished_format_3_or_4_cache_is_read_and_an_unfinished_format_3_one_is_refused(int8_cache, tmp_path,
                                                                                           version):
    import shutil

    graph_set, directory, ids = int8_cache
    record = json.loads((directory / "cache.json").read_text())
    # format 4 has no codec entry (format 5's); format 3 no unfinished build either
    older = {key: value for key, value in record.items()
             if key != "codec" and (version == 4 or key != "unfinished_build")}
    copy = tmp_path / f"format-{version}"
    shutil.copytree(directory, copy)
    (copy / "cache.json").write_text(json.dumps(dict(older, format_version=version)))
    cache = load_passage_cache(copy, graph_set)
    assert cache.info["format_version"] == 5 and cache.info["unfinished_build"] is None
    assert cache.info["codec"] is None
    assert (cache.rows(ids, np.ones_like(ids)) >= 0).all()
    grown = build_passage_cache(graph_set, ids[:, ::-1].copy(), np.ones_like(ids), copy, evaluation_session,
                                progress=False, append=True)  # written as format 5 from then on
    assert json.loads((copy / "cache.json").read_text())["format_version"] == 5 and grown.windows == 6
    if version == 4:
        return
    format_3 = older
    (copy / "cache.json").write_text(json.dumps(dict(format_3, format_version=3, complete=False)))
    with pytest.raises(PassageCacheError, match="format 3.*does not say which passages") as error:
        load_passage_cache(copy)
    assert "build it again" in error.value.hint


def test_the_schema_names_the_files_a_segment_holds():
    from deformer_bench.passage_cache.quantizers import make_codec

    identity = {"passage_len": 4, "hidden_size": 16, "vocab_size": 10}
    for dtype in ("float32", "float16", "int8"):
        assert segment_files(dtype) == {f"{stem}.npy" for stem in expected_arrays(dtype, 1, identity)}
    for dtype in ("pq", "rq", "binary"):  # a learned codec's: its codes and the windows' lengths
        codec = make_codec(dtype, 16, **({"m": 4} if dtype == "pq" else {}))
        assert segment_files(dtype) == {f"{stem}.npy" for stem in expected_arrays(dtype, 1, identity, codec)}
