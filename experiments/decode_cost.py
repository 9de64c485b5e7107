"""What decoding a learned codec's passage cache costs in the query path at batch 1 (issue 25: at most 5% of the
online latency), measured alone and against the online graphs it feeds, on the cache's own windows.

    python experiments/decode_cost.py GRAPHS CACHE [--windows 200] [--rounds 300] [--lengths real|full]
                                      [--question-len 16] [--stages] [--output decode-cost.json]

GRAPHS is the graph set the cache was built with (deformer-cache build GRAPHS ... --dtype pq|rq|binary), CACHE the
cache. Each round takes the next of the cache's first `--windows` windows and times, one after the other:
  decode   the window read as a server reads it (PassageCache.passage_hidden: its codes gathered from the mapped
           segment and decoded, the padding past its length left zero), numpy's BLAS on one thread (the codec
           holds it there);
  online   lower_question (random ids, `--question-len` tokens) + upper on those states, at the window's own
           length (`--lengths real`, a server's batch of one: the scenario benchmark's real lengths) or at the
           graph set's passage length (`full`, what deformer-bench's online_served_codec times).
It prints and writes the p50/p90 of each, and decode's share: decode p50 / (decode p50 + online p50). With --stages
(pq only), the decode's own steps timed apart on the same windows: gathering the codes, the table look-ups, joining
the sub-vectors, the product back to the states' coordinates (runtime.codec_decode.decode_product: split over two
threads from SPLIT_PRODUCT_MIN_ROWS rows), adding the mean, placing the tokens in the zero-filled window, and the
same product again on one thread (product_one_thread: what the split saves). --unsplit turns the split off
throughout (the query path as before it).

With --paired (pq with a transform), four ways of serving the same window are timed round-robin, each round
on the same window and question, their order rotated: `numpy` (the window decoded whole in numpy, then
lower_question + upper), `graph` (the look-ups only, then lower_question + upper with the product inside:
exporters/codec_upper.py), `read_ahead` (the same with the look-ups on a helper thread while lower_question runs:
GraphSetSessions.online_read_ahead, what the scenario benchmark's server runs) and `states` (lower_question + upper
on the window's states decoded beforehand: no read, no decode at all). Each way's cost is its paired extra time
over `states` (the median of the per-round differences), and its share extra / (extra + states' p50): the
product inside upper cannot be timed apart.

A functional tool: quote its figures only from a quiet machine (nothing else running), and say which one. It runs in
one process; onnxruntime takes its default threads unless --intra-op-threads is given.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import load_passage_cache
from deformer_bench.passage_cache.quantizers import one_blas_thread
from deformer_bench.runtime import codec_decode
from deformer_bench.runtime.codec_decode import decode_product, product_tables, table_decode
from deformer_bench.runtime.sessions import GraphSetSessions


def percentiles_us(samples_ns: list) -> dict:
    values = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"p50_us": round(float(np.percentile(values, 50)), 1), "p90_us": round(float(np.percentile(values, 90)), 1)}


def question_inputs(vocab_size: int, question_len: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab_size, (1, question_len), dtype=np.int64)
    return ids, np.ones_like(ids)


def window_lengths(cache, rows: np.ndarray) -> np.ndarray:
    """[N] valid tokens of each of the cache's rows (its first segment holds them: the rows are its first)."""
    return np.asarray(cache.array(0, "passage_length")[rows], dtype=np.int64)


def time_query_path(cache, sessions, rows, lengths, question, passage_len: int, rounds: int, real: bool) -> dict:
    """Per round, one window decoded (decode) then lower_question + upper on it (online), back to back."""
    decode_ns, online_ns = [], []
    for round_index in range(rounds):
        row, length = rows[round_index % len(rows)], int(lengths[round_index % len(rows)])
        started = time.perf_counter_ns()
        states = cache.passage_hidden([row])
        decoded = time.perf_counter_ns()
        width = length if real else passage_len
        mask = (np.arange(width) < length).astype(np.int64)[None, :]
        sessions.online(question[0], question[1], np.ascontiguousarray(states[:, :width]), mask)
        done = time.perf_counter_ns()
        decode_ns.append(decoded - started)
        online_ns.append(done - decoded)
    decode, online = percentiles_us(decode_ns), percentiles_us(online_ns)
    return {"decode": decode, "online": online,
            "decode_share": round(decode["p50_us"] / (decode["p50_us"] + online["p50_us"]), 4)}


def time_pq_stages(cache, rows, lengths, rounds: int) -> dict:
    """pq's decode in its steps (the codec's ProductDecoder, written out), each timed apart, on the same windows."""
    codebook = cache.codec.codebook
    tables = product_tables(codebook)
    decoder, mean = codebook.get("decoder"), codebook.get("mean")
    segment_codes = cache.array(0, "passage_codes")
    passage_len, hidden = segment_codes.shape[1], cache.info["identity"]["hidden_size"]
    steps = {name: [] for name in ("gather_codes", "table_lookups", "join", "product", "mean", "place",
                                   "product_one_thread")}
    with one_blas_thread():
        for round_index in range(rounds):
            row, length = rows[round_index % len(rows)], int(lengths[round_index % len(rows)])
            clock = [time.perf_counter_ns()]
            codes = np.ascontiguousarray(segment_codes[[row]])[0, :length]
            clock.append(time.perf_counter_ns())
            parts = [table_decode(table, codes[:, first:first + len(table)]) for first, _, table in tables]
            clock.append(time.perf_counter_ns())
            coefficients = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            clock.append(time.perf_counter_ns())
            tokens = decode_product(coefficients, decoder) if decoder is not None else coefficients
            clock.append(time.perf_counter_ns())
            if mean is not None:
                tokens += mean
            clock.append(time.perf_counter_ns())
            out = np.zeros((passage_len, hidden), dtype=np.float32)
            out[:length] = tokens
            clock.append(time.perf_counter_ns())
            if decoder is not None:  # the same product unsplit, on this thread alone (as before the split)
                np.matmul(coefficients, decoder)
            clock.append(time.perf_counter_ns())
            for name, before, after in zip(steps, clock, clock[1:]):
                steps[name].append(after - before)
    return {name: percentiles_us(samples) for name, samples in steps.items()}


def time_paired(cache, sessions, coded_upper, rows, lengths, question, rounds: int) -> dict:
    """numpy, graph, read_ahead and states (see the module's doc) on the same window each round, at its real length."""
    states = [np.ascontiguousarray(cache.passage_hidden([row])[:, :length]) for row, length in zip(rows, lengths)]

    def numpy_decode(row, length, mask, index):
        sessions.online(question[0], question[1], np.ascontiguousarray(cache.passage_hidden([row])[:, :length]), mask)

    def graph_product(row, length, mask, index):
        coefficients = cache.passage_coefficients([row], length)
        sessions.online_coded(question[0], question[1], coefficients, mask, coded_upper)

    def read_ahead(row, length, mask, index):
        sessions.online_read_ahead(question[0], question[1], lambda: cache.passage_coefficients([row], length), mask,
                                   coded_upper)

    def decoded_before(row, length, mask, index):
        sessions.online(question[0], question[1], states[index], mask)

    ways = [("numpy", numpy_decode), ("graph", graph_product), ("read_ahead", read_ahead), ("states", decoded_before)]
    samples = {name: [] for name, _ in ways}
    for round_index in range(rounds):
        index = round_index % len(rows)
        row, length = rows[index], int(lengths[index])
        mask = np.ones((1, length), dtype=np.int64)
        for name, way in ways[round_index % len(ways):] + ways[:round_index % len(ways)]:
            started = time.perf_counter_ns()
            way(row, length, mask, index)
            samples[name].append(time.perf_counter_ns() - started)
    times = {name: np.asarray(values, dtype=np.float64) / 1e3 for name, values in samples.items()}
    record = {name: percentiles_us(values) for name, values in samples.items()}
    for name in ("numpy", "graph", "read_ahead"):
        extra = float(np.median(times[name] - times["states"]))
        record[name]["paired_extra_us"] = round(extra, 1)
        record[name]["share"] = round(extra / (extra + record["states"]["p50_us"]), 4)
    return record


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--windows", type=int, default=200, help="the cache's first windows, taken in turn")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--lengths", choices=("real", "full"), default="real")
    parser.add_argument("--question-len", type=int, default=16)
    parser.add_argument("--intra-op-threads", type=int, default=0, help="onnxruntime's (0: its default)")
    parser.add_argument("--stages", action="store_true", help="pq: the decode's steps timed apart")
    parser.add_argument("--unsplit", action="store_true",
                        help="pq's product on one thread (runtime.codec_decode's split turned off)")
    parser.add_argument("--paired", action="store_true",
                        help="pq with a transform: numpy's decode, the product in upper's graph (the look-ups "
                             "before or beside lower_question) and no decode, paired round by round (real lengths)")
    parser.add_argument("--output", type=Path, help="a JSON file of the figures")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.unsplit:
        codec_decode.SPLIT_PRODUCT_MIN_ROWS = 1 << 62
    graph_set = load_graph_set(args.graphs)
    cache = load_passage_cache(args.cache, graph_set)
    if cache.codec is None:
        raise SystemExit(f"{args.cache} stores {cache.info['dtype']} states: give a cache of a learned codec")
    rows = np.arange(min(args.windows, cache.segments[0].windows))
    lengths = window_lengths(cache, rows)
    sessions = GraphSetSessions(args.graphs, ("lower_question", "upper"),
                                settings={"intra_op_threads": args.intra_op_threads})
    question = question_inputs(graph_set.manifest["model"]["vocab_size"], args.question_len)
    passage_len = cache.info["identity"]["passage_len"]
    if args.paired:
        main_paired(args, cache, sessions, rows, lengths, question)
        return
    time_query_path(cache, sessions, rows, lengths, question, passage_len, min(20, args.rounds),
                    args.lengths == "real")  # warm-up: every segment checked once, sessions warm
    record = {"graphs": str(args.graphs), "cache": str(args.cache), "codec": cache.codec.describe(),
              "windows": len(rows), "mean_length": round(float(lengths.mean()), 1), "lengths": args.lengths,
              "question_len": args.question_len, "rounds": args.rounds,
              "product": "one thread" if args.unsplit else f"split from {codec_decode.SPLIT_PRODUCT_MIN_ROWS} rows",
              **time_query_path(cache, sessions, rows, lengths, question, passage_len, args.rounds,
                                args.lengths == "real")}
    if args.stages and cache.codec.name == "pq":
        record["pq_stages"] = time_pq_stages(cache, rows, lengths, args.rounds)
    print(json.dumps(record, indent=1))
    if args.output:
        args.output.write_text(json.dumps(record, indent=1) + "\n")


def main_paired(args, cache, sessions, rows, lengths, question) -> None:
    from deformer_bench.exporters.codec_upper import upper_with_product
    from deformer_bench.runtime.sessions import open_session

    if cache.graph_product is None:
        raise SystemExit(f"--paired: {cache.codec.describe()} has no product to put in upper's graph")
    coded_upper = open_session(upper_with_product(args.graphs / "upper.onnx", *cache.graph_product),
                               {"intra_op_threads": args.intra_op_threads})
    time_paired(cache, sessions, coded_upper, rows, lengths, question, min(60, args.rounds))  # warm-up
    record = {"graphs": str(args.graphs), "cache": str(args.cache), "codec": cache.codec.describe(),
              "windows": len(rows), "mean_length": round(float(lengths.mean()), 1), "lengths": "real",
              "question_len": args.question_len, "rounds": args.rounds,
              **time_paired(cache, sessions, coded_upper, rows, lengths, question, args.rounds)}
    print(json.dumps(record, indent=1))
    if args.output:
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
