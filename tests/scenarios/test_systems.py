"""One query's work per system, and the rule that real lengths keep each model's layout."""

import threading

import numpy as np
import pytest

from deformer_bench.runtime.sessions import READ_AHEAD_HELPER
from deformer_bench.scenarios.systems import QuestionAnswerer, SystemSpec, batch_widths, to_graph_set_layout

from .conftest import DOC_STRIDE


@pytest.fixture(scope="module")
def batch(small_train_file):
    """Short questions of several lengths (under 16 tokens) about the two shortest paragraphs (one window each,
    shorter than 96 tokens)."""
    from deformer_bench.squad.data import load_squad

    examples = load_squad(small_train_file)
    shortest = sorted({example.context for example in examples}, key=len)[:2]
    return [example for example in examples if example.context in shortest and len(example.question.split()) <= 8][:8]


def answerer(kind: str, graphs: dict, caches: dict = None) -> QuestionAnswerer:
    from deformer_bench.answer import graph_set_tokenizer
    from deformer_bench.passage_cache import load_passage_cache
    from deformer_bench.contracts.manifest import load_graph_set

    graph_set = load_graph_set(graphs["unsplit" if kind == "unsplit" else "deformer"])
    cache = load_passage_cache(caches["float32"], graph_set) if kind == "deformer" else None
    return QuestionAnswerer(SystemSpec(kind, graph_set.directory), graph_set, graph_set_tokenizer(graph_set),
                            {"intra_op_threads": 1}, cache, DOC_STRIDE)


def features_of(system: QuestionAnswerer, examples):
    from deformer_bench.squad.features import featurize

    return featurize(examples, system.tokenizer, system.question_len, system.passage_len, DOC_STRIDE, progress=False)


@pytest.mark.parametrize("kind", ["unsplit", "deformer", "deformer-miss"])
def test_real_lengths_give_the_fixed_lengths_logits(kind, scenario_graphs, scenario_caches, batch):
    system = answerer(kind, scenario_graphs, scenario_caches)
    features = features_of(system, batch)
    question, passage = batch_widths(features, "real", keep_question=kind == "unsplit")
    assert passage < system.passage_len  # the batch is fed shorter than the graph set's lengths
    if kind != "unsplit":
        assert question < system.question_len
    real, fixed = system.logits(features, "real"), system.logits(features, "fixed")
    valid = features.token_offsets[:, :, 0] >= 0  # the passage tokens a span can use
    for real_logits, fixed_logits in zip(real, fixed):
        passage_real = real_logits[:, system.question_len:][valid]
        passage_fixed = fixed_logits[:, system.question_len:][valid]
        np.testing.assert_allclose(passage_real, passage_fixed, atol=1e-4)
    assert system.answer(batch, "real") == system.answer(batch, "fixed")


def test_the_unsplit_model_would_move_its_passage_if_the_question_were_cut(scenario_graphs, batch):
    """Why the unsplit system keeps its question padded: full.onnx numbers positions contiguously, so a shorter
    question part puts the passage at other positions, and its logits change."""
    system = answerer("unsplit", scenario_graphs)
    features = features_of(system, batch)
    question, passage = batch_widths(features, "real", keep_question=False)
    inputs = {"input_ids": np.concatenate([features.question_input_ids[:, :question],
                                           features.passage_input_ids[:, :passage]], axis=1),
              "attention_mask": np.concatenate([features.question_attention_mask[:, :question],
                                                features.passage_attention_mask[:, :passage]], axis=1)}
    inputs["token_type_ids"] = np.concatenate([np.zeros_like(features.question_input_ids[:, :question]),
                                               np.ones_like(features.passage_input_ids[:, :passage])], axis=1)
    shifted = to_graph_set_layout(system.sessions.unsplit(**inputs)[0], question, system.question_len,
                                  system.passage_len)
    kept = system.logits(features, "real")[0]
    valid = features.token_offsets[:, :, 0] >= 0
    assert np.abs(shifted[:, system.question_len:][valid] - kept[:, system.question_len:][valid]).max() > 1e-3


def test_logits_fed_short_go_back_to_the_graph_set_coordinates():
    logits = np.arange(2 * 5, dtype=np.float32).reshape(2, 5)  # question width 2, passage width 3
    out = to_graph_set_layout(logits, 2, question_len=4, passage_len=6)
    assert out.shape == (2, 10)
    np.testing.assert_array_equal(out[:, :2], logits[:, :2])
    np.testing.assert_array_equal(out[:, 4:7], logits[:, 2:])
    assert np.isneginf(out[:, 2:4]).all() and np.isneginf(out[:, 7:]).all()
    full = np.zeros((1, 10), dtype=np.float32)
    assert to_graph_set_layout(full, 4, 4, 6) is full


def test_a_query_answers_each_sample_even_when_one_comes_twice(scenario_graphs, scenario_caches, batch,
                                                               monkeypatch):
    system = answerer("deformer", scenario_graphs, scenario_caches)
    read_on = record_threads(system.cache, "passage_hidden", monkeypatch)
    answers = system.answer([batch[0], batch[1], batch[0]], "real")
    assert len(answers) == 3 and answers[0] == answers[2]
    assert system.cache_misses == 0
    assert read_on and read_on[0].startswith(READ_AHEAD_HELPER)  # the cache read beside lower_question


def test_a_batch_the_cache_holds_reads_only_the_width_fed(scenario_graphs, scenario_caches, batch, monkeypatch):
    """At real lengths the deformer reads (and a codec decodes) its cached states up to the batch's widest window
    only, not the cache's whole Lp; at fixed lengths all of it."""
    system = answerer("deformer", scenario_graphs, scenario_caches)
    features = features_of(system, batch)
    _, passage = batch_widths(features, "real", keep_question=False)
    asked, original = [], system.cache.passage_hidden

    def recorded(rows, positions=None):
        asked.append(positions)
        return original(rows, positions)

    monkeypatch.setattr(system.cache, "passage_hidden", recorded)
    system.logits(features, "real")
    system.logits(features, "fixed")
    assert asked == [passage, system.passage_len] and passage < system.passage_len


def record_threads(cache, method: str, monkeypatch) -> list:
    """The names of the threads that call cache.`method` from now on."""
    seen, original = [], getattr(cache, method)

    def recorded(*args):
        seen.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(cache, method, recorded)
    return seen


def test_a_pq_cache_with_a_transform_leaves_its_product_to_upper_s_graph(scenario_graphs, small_train_file, batch,
                                                                         tmp_path_factory, monkeypatch):
    """The deformer served from a pq cache with a transform runs only the look-ups of the decode in numpy and upper
    with the product inside (exporters/codec_upper.py): the logits and answers of the numpy decode."""
    pytest.importorskip("faiss")  # building the cache needs it
    from deformer_bench.answer import graph_set_tokenizer
    from deformer_bench.cli.cache import cache_main
    from deformer_bench.contracts.manifest import load_graph_set
    from deformer_bench.passage_cache import load_passage_cache

    from deformer_bench.passage_cache.quantizers import base

    monkeypatch.setattr(base, "MIN_POINTS_PER_CENTROID", 1)  # the small file's ~500 tokens: a poor codebook, served
    directory = tmp_path_factory.mktemp("pq-pca") / "cache"
    assert cache_main(["build", str(scenario_graphs["deformer"]), "--passages", str(small_train_file), "--out",
                       str(directory), "--doc-stride", str(DOC_STRIDE), "--dtype", "pq", "--codec-settings",
                       "m=8,transform=pca", "--quiet"]) == 0
    graph_set = load_graph_set(scenario_graphs["deformer"])
    system = QuestionAnswerer(SystemSpec("deformer", graph_set.directory), graph_set, graph_set_tokenizer(graph_set),
                              {"intra_op_threads": 1}, load_passage_cache(directory, graph_set), DOC_STRIDE)
    assert system.coded_upper is not None
    features = features_of(system, batch)
    read_on = record_threads(system.cache, "passage_coefficients", monkeypatch)
    coded = system.logits(features, "real")
    assert read_on and read_on[0].startswith(READ_AHEAD_HELPER)  # beside lower_question
    system.coded_upper = None  # the numpy decode: passage_hidden read ahead, then upper
    decoded = system.logits(features, "real")
    valid = features.token_offsets[:, :, 0] >= 0
    for coded_logits, decoded_logits in zip(coded, decoded):
        np.testing.assert_allclose(coded_logits[:, system.question_len:][valid],
                                   decoded_logits[:, system.question_len:][valid], atol=1e-4)
    assert system.cache_misses == 0
