"""Issue 25, phase 1: F1 per byte of learned passage-state codecs (deformer_bench/passage_cache/quantizers/).

The float32 passage states of a graph set are computed once into WORK (lower_passage, the cache's own graph):
- train.npz: the valid tokens' states of a seeded sample of SQuAD train paragraphs (what codebooks learn from);
- dev.npz: every distinct passage window of the dev set, [U, Lp, H], with their keys.
Each run then learns a codec on the train sample (its codebook kept in WORK/codebooks, reused), encodes and
decodes the dev windows, and scores the dev questions (all, or every Nth) through the project's serving path
(serving.onnx_logits: lower_question online, the decoded states where the cache's would be, then upper),
postprocessing and metric. One JSON record per run in OUT (machine, commit, command, codec, setting, bytes per
token all included, F1, EM, and the answers that differ from the float32 states' answers); a run whose record
exists is skipped, so the script resumes.

    python experiments/passage_cache_codecs.py states GRAPHS MODEL WORK [--train-paragraphs 1000]
    python experiments/passage_cache_codecs.py fisher GRAPHS MODEL WORK [--questions 192]   (pq transform=fisher's
                                                                             metric; deformer-cache --codec-metric)
    python experiments/passage_cache_codecs.py run GRAPHS MODEL WORK OUT --codec pq --setting m=96 [--every 35]
    python experiments/passage_cache_codecs.py table OUT [--teacher OUT2]   (the README's tables and the plot:
                                                                    passage_cache_codecs_table.py)
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SQUAD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "squad"
TRAIN = SQUAD / "train-v1.1.from_explorer.json.gz"
DEV = SQUAD / "dev-v1.1.json.gz"
DOC_STRIDE = 128
BATCH = 64


def lower_passage_states(graph_set, input_ids, attention_mask, desc: str) -> np.ndarray:
    """[N, Lp, H] float32 states of these windows through the graph set's lower_passage."""
    from deformer_bench.serving import batch_slices, evaluation_session

    session = evaluation_session(graph_set.path("lower_passage"))
    parts = [session.run(["passage_hidden"], {"passage_input_ids": input_ids[part],
                                              "passage_attention_mask": attention_mask[part]})[0]
             for part in batch_slices(len(input_ids), BATCH, True, desc)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def featurized(graph_set, model_dir, examples):
    from deformer_bench.tokenizer import load_tokenizer
    from deformer_bench.squad.features import featurize

    deformer = graph_set.manifest["deformer"]
    return featurize(examples, load_tokenizer(Path(model_dir)), deformer["question_len"], deformer["passage_len"],
                     DOC_STRIDE, progress=False)


def train_examples(count: int, seed: int) -> list:
    """One question of each of `count` train paragraphs drawn at random (seeded): their windows are the sample."""
    from deformer_bench.squad.data import load_squad

    first_of_context = {}
    for example in load_squad(TRAIN):
        first_of_context.setdefault(example.context, example)
    contexts = sorted(first_of_context)
    picked = np.random.default_rng(seed).choice(len(contexts), size=min(count, len(contexts)), replace=False)
    return [first_of_context[contexts[index]] for index in sorted(picked)]


def compute_states(args) -> None:
    """train.npz (the sample's valid tokens' states) and dev.npz (every distinct dev window's states, lengths and
    keys), each once."""
    from deformer_bench.contracts.manifest import load_graph_set

    from deformer_bench.passage_cache.store import distinct_windows, window_keys
    from deformer_bench.squad.data import load_squad

    graph_set = load_graph_set(args.graphs)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name, examples in (("train", lambda: train_examples(args.train_paragraphs, args.seed)),
                           ("dev", lambda: load_squad(DEV))):
        if (work / f"{name}.npz").exists():
            continue
        features = featurized(graph_set, args.model, examples())
        first, _ = distinct_windows(features.passage_input_ids, features.passage_attention_mask)
        ids, mask = features.passage_input_ids[first], features.passage_attention_mask[first]
        valid = mask.astype(bool)
        states = lower_passage_states(graph_set, ids, mask, f"{name} windows")
        if name == "train":  # padding states reach no answer (masked as keys; never a span): not learned from
            save(work / "train.npz", tokens=states[valid], windows=len(first), paragraphs=args.train_paragraphs,
                 seed=args.seed)
        else:
            keys = np.frombuffer(b"".join(window_keys(ids, mask)), dtype=np.uint8).reshape(len(first), -1)
            save(work / "dev.npz", states=states, lengths=mask.sum(axis=1), keys=keys)
        print(f"{name}: {len(first)} distinct windows, {int(valid.sum())} tokens", file=sys.stderr)
    (work / "graphs.json").write_text(json.dumps({"graphs": str(args.graphs), "manifest_graphs":
                                                  graph_set.manifest["graphs"]}, indent=1))


def compute_fisher(args) -> None:
    """fisher.npy: the upper layers' sensitivity to each direction of the passage states (sensitivity.py),
    from `--questions` questions of the sample's train paragraphs (a seeded draw; never dev questions)."""
    import torch
    from deformer_bench.contracts.manifest import load_graph_set

    from deformer_bench.model import Deformer
    from deformer_bench.passage_cache.sensitivity import fisher_metric
    from deformer_bench.squad.data import load_squad

    work = Path(args.work)
    if (work / "fisher.npy").exists():
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads())
    graph_set = load_graph_set(args.graphs)
    deformer = Deformer.from_pretrained(args.model).eval()
    paragraphs = {example.context for example in train_examples(args.train_paragraphs, args.seed)}
    questions = [example for example in load_squad(TRAIN) if example.context in paragraphs]
    picked = np.random.default_rng(args.seed + 1).choice(len(questions), args.questions, replace=False)
    features = featurized(graph_set, args.model, [questions[index] for index in sorted(picked)])
    started = time.process_time()
    metric = fisher_metric(deformer, features, seed=args.seed)
    np.save(work / "fisher.partial.npy", metric)
    (work / "fisher.partial.npy").rename(work / "fisher.npy")
    (work / "fisher.json").write_text(json.dumps({"questions": args.questions, "windows": len(features),
                                                  "cpu_seconds": round(time.process_time() - started, 1),
                                                  "seed": args.seed}, indent=1))


def save(path: Path, **arrays) -> None:
    """np.savez written beside `path` and renamed: an interrupted run leaves no half file that looks done."""
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, **arrays)
    partial.rename(path)


class DecodedStates:
    """What serving.onnx_logits reads passage states from (a PassageCache's passage_hidden): here each batch's
    rows are decoded from the codes in memory, at the point where the cache decodes its stored states."""

    def __init__(self, codes: dict, decode):
        self.codes, self.decode, self.decode_seconds, self.windows_decoded = codes, decode, 0.0, 0

    def passage_hidden(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        picked = {name: array[rows] for name, array in self.codes.items()}
        started = time.perf_counter()
        states = self.decode(picked)
        self.decode_seconds += time.perf_counter() - started
        self.windows_decoded += len(rows)
        return states


def dev_questions(every: int):
    from deformer_bench.squad.data import load_squad

    return load_squad(DEV)[::every]


def scored(graph_set, model_dir, work: Path, every: int, codes: dict, decode, timing: bool = False) -> dict:
    """F1 and EM of the dev questions (every `every`th) with passage states decoded from `codes` ([U, ...] per dev
    window, as dev.npz orders them), and their answers, through the project's serving path and metric."""
    from deformer_bench.passage_cache.store import window_keys
    from deformer_bench.serving import onnx_logits
    from deformer_bench.squad.metric import evaluate
    from deformer_bench.squad.postprocess import predictions_from_logits

    examples = dev_questions(every)
    features = featurized(graph_set, model_dir, examples)
    keys = np.load(work / "dev.npz")["keys"]
    row_of_key = {key.tobytes(): row for row, key in enumerate(keys)}
    rows = np.asarray([row_of_key[key] for key in window_keys(features.passage_input_ids,
                                                              features.passage_attention_mask)])
    cache = DecodedStates(codes, decode)
    started = time.perf_counter()
    start, end = onnx_logits(graph_set, features, cache, rows, BATCH, progress=False)
    online = time.perf_counter() - started
    question_len = graph_set.manifest["deformer"]["question_len"]
    predictions = predictions_from_logits(examples, features, start, end, question_len)
    timings = query_path_timing(graph_set, features, rows, decode, codes) if timing else None
    return {"scores": evaluate(examples, predictions), "questions": len(examples), "windows": len(features),
            "logits": answer_log_probabilities(start, end, features.passage_attention_mask, question_len),
            "online_seconds": round(online, 1), "decode_seconds": round(cache.decode_seconds, 2),
            "windows_decoded": cache.windows_decoded, "predictions": predictions, "query_path": timings}


def answer_log_probabilities(start, end, passage_mask, question_len: int) -> np.ndarray:
    """[2, N, Lp] float32: log-softmax of the start and end logits over each window's passage tokens (where an
    answer can be; padding at -inf). Their KL divergence from the float32 states' is a far less noisy measure of
    what a codec changes than F1 on a few hundred questions."""
    valid = passage_mask.astype(bool)
    out = []
    for logits in (start, end):
        passage = np.where(valid, logits[:, question_len:], -np.inf).astype(np.float64)
        passage -= passage.max(axis=1, keepdims=True)
        out.append(passage - np.log(np.exp(passage).sum(axis=1, keepdims=True)))
    return np.stack(out).astype(np.float32)


def mean_kl(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over windows of KL(reference || other), start and end summed (nats)."""
    probabilities = np.exp(reference)
    terms = np.where(probabilities > 0, probabilities * (reference - other), 0.0)
    return float(terms.sum(axis=2).sum(axis=0).mean())


BASELINES = ("float32", "float16", "int8")  # codecs.py's dtypes, decoded as the cache decodes them


def parse_setting(text: str) -> dict:
    """"m=96,transform=opq" -> {"m": 96, "transform": "opq"}: deformer-cache build --codec-settings' parser."""
    from deformer_bench.passage_cache.quantizers import parse_settings

    return parse_settings(text)


def run_name(codec: str, settings: dict, every: int) -> str:
    setting = "-".join(f"{key}{int(value) if isinstance(value, bool) else value}" for key, value in settings.items())
    return f"{codec}{'-' + setting if setting else ''}-{'full' if every == 1 else f'every{every}'}"


def baseline_codec(dtype: str):
    """(encode, decode, bytes per token all included) of codecs.py's dtype, as a cache stores it (format 3's
    ids and key, the mask as a length, as the learned codecs are counted)."""
    from deformer_bench.passage_cache import codecs
    from deformer_bench.passage_cache.quantizers import KEY_BYTES_PER_WINDOW, LENGTH_BYTES_PER_WINDOW

    def encode(states):
        return codecs.encode(states, dtype)

    def decode(stored):
        return codecs.decode(stored["passage_hidden"], stored.get("passage_scale"))

    def bytes_per_token(hidden_size, passage_len):
        states = codecs.bytes_per_window(dtype, passage_len, hidden_size) / passage_len
        return states + 2 + (KEY_BYTES_PER_WINDOW + LENGTH_BYTES_PER_WINDOW) / passage_len

    return encode, decode, bytes_per_token


def trained_codec(name: str, settings: dict, hidden_size: int, work: Path, train_tokens: int, seed: int):
    """The codec learned on `train_tokens` token states of train.npz (seeded draw), its codebook kept in
    WORK/codebooks/NAME/ and reused by later runs."""
    from deformer_bench.passage_cache.quantizers import make_codec

    codec = make_codec(name, hidden_size, **settings)
    folder = work / "codebooks" / f"{run_name(name, settings, 0).rsplit('-', 1)[0]}-t{train_tokens}-s{seed}"
    record = folder / "codebook.json"
    if record.exists():
        codec.codebook = {key: np.load(folder / f"{key}.npy") for key in json.loads(record.read_text())["arrays"]}
        return codec, json.loads(record.read_text())
    tokens = np.load(work / "train.npz")["tokens"]
    picked = (np.sort(np.random.default_rng(seed).choice(len(tokens), train_tokens, replace=False))
              if 0 < train_tokens < len(tokens) else np.arange(len(tokens)))
    started = time.process_time()
    # faiss draws at most 256 points a centroid from what it is given (its k-means default)
    metric = np.load(work / "fisher.npy") if settings.get("transform") == "fisher" else None
    codec.train(tokens[picked], metric, seed=seed)
    info = {"arrays": sorted(codec.codebook), "train_tokens": len(picked), "seed": seed,
            "train_cpu_seconds": round(time.process_time() - started, 1), "codebook_bytes": codec.codebook_bytes()}
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in codec.codebook.items():
        np.save(folder / f"{key}.npy", array)
    record.write_text(json.dumps(info, indent=1))
    return codec, info


def query_path_timing(graph_set, features, feature_rows, decode, codes: dict, rounds: int = 60) -> dict:
    """The query path at batch 1, as served: per round, one question window's codes gathered and decoded
    (decode_us), then lower_question + upper on it (online_ms), interleaved; and the decode of two windows alone.
    Functional figures: the machine is shared with a training job and other sessions' tests."""
    from deformer_bench.serving import online_sessions

    sessions = online_sessions(graph_set)
    picked = np.random.default_rng(0).choice(len(feature_rows), rounds + 5, replace=False)
    decode_ns, online_ns, pair_ns = [], [], []
    for round_index, feature in enumerate(picked):
        row = feature_rows[feature:feature + 1]
        started = time.perf_counter_ns()
        states = decode({name: array[row] for name, array in codes.items()})
        decoded = time.perf_counter_ns()
        sessions.online(features.question_input_ids[feature:feature + 1],
                        features.question_attention_mask[feature:feature + 1], states,
                        features.passage_attention_mask[feature:feature + 1])
        done = time.perf_counter_ns()
        pair = feature_rows[picked[round_index - 1:round_index + 1]] if round_index else None
        if pair is not None:
            started_pair = time.perf_counter_ns()
            decode({name: array[pair] for name, array in codes.items()})
            pair_ns.append(time.perf_counter_ns() - started_pair)
        if round_index >= 5:  # warm-up
            decode_ns.append(decoded - started)
            online_ns.append(done - decoded)
    decode_us, online_ms = float(np.median(decode_ns)) / 1e3, float(np.median(online_ns)) / 1e6
    return {"decode_1_window_p50_us": round(decode_us, 1), "decode_2_windows_p50_us":
            round(float(np.median(pair_ns)) / 1e3, 1), "online_p50_ms": round(online_ms, 2),
            "decode_share_of_online_1_window": round(decode_us / 1e3 / (online_ms + decode_us / 1e3), 4),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "rounds": rounds,
            "note": "functional: beside a training job and other sessions' tests on the same 2 cores"}


def run(args) -> None:
    from deformer_bench.contracts.manifest import load_graph_set

    from deformer_bench.environment import describe_environment

    out, work = Path(args.out), Path(args.work)
    settings = parse_setting(args.setting)
    name = run_name(args.codec, settings, args.every)
    record_path = out / f"{name}.json"
    if record_path.exists():
        print(f"{record_path} exists: skipped", file=sys.stderr)
        return
    environment = describe_environment(["python", *sys.argv])
    graph_set = load_graph_set(args.graphs)
    deformer = graph_set.manifest["deformer"]
    hidden_size, passage_len = graph_set.manifest["model"]["hidden_size"], deformer["passage_len"]
    dev = np.load(work / "dev.npz")
    # only the windows the questions read are encoded (every window for the full set)
    from deformer_bench.passage_cache.store import window_keys

    features = featurized(graph_set, args.model, dev_questions(args.every))
    row_of_key = {key.tobytes(): row for row, key in enumerate(dev["keys"])}
    needed = np.unique([row_of_key[key] for key in window_keys(features.passage_input_ids,
                                                               features.passage_attention_mask)])
    states = dev["states"][needed]
    codebook_info = None
    if args.codec in BASELINES:
        encode, decode, bytes_of = baseline_codec(args.codec)
        bytes_per_token = bytes_of(hidden_size, passage_len)
        describe = args.codec
    else:
        codec, codebook_info = trained_codec(args.codec, settings, hidden_size, work, args.train_tokens, args.seed)
        encode = codec.encode

        def decode(stored):  # the lengths ride with the codes, as a segment would store them
            return codec.decode({key: value for key, value in stored.items() if key != "passage_length"},
                                stored["passage_length"])
        bytes_per_token = codec.bytes_per_token(passage_len)
        describe = codec.describe()
    started = time.process_time()
    lengths = dev["lengths"][needed]
    encoded = encode(states, lengths) if codebook_info else encode(states)
    encoded["passage_length"] = lengths.astype(np.uint16)
    encode_cpu = time.process_time() - started
    decoded = decode(encoded)
    valid = np.arange(passage_len)[None, :] < dev["lengths"][needed][:, None]  # padding reaches no answer
    errors = (decoded - states)[valid]
    centered = states[valid] - states[valid].mean(axis=0)
    error = float((errors ** 2).sum(-1).mean() / (centered ** 2).sum(-1).mean())
    fisher_error = None
    if (work / "fisher.npy").exists():  # the upper layers' sensitivity to each direction (fisher stage)
        fisher = np.load(work / "fisher.npy").astype(np.float32)
        fisher_error = float(((errors @ fisher) * errors).sum(-1).mean() / ((centered @ fisher) * centered).sum(-1).mean())
    # the codes of every dev window at its dev.npz row (rows not needed stay zero: never read)
    codes = {key: np.zeros((len(dev["keys"]),) + value.shape[1:], value.dtype) for key, value in encoded.items()}
    for key, value in encoded.items():
        codes[key][needed] = value
    result = scored(graph_set, args.model, work, args.every, codes, decode, timing=True)
    # the answers stay in WORK (a full run's are ~0.5 MB): the record keeps how many differ from float32's
    answers = work / "predictions"
    answers.mkdir(exist_ok=True)
    predictions = result.pop("predictions")
    (answers / f"{name}.json").write_text(json.dumps(predictions))
    reference = answers / f"{run_name('float32', {}, args.every)}.json"
    reference = json.loads(reference.read_text()) if reference.exists() else None
    log_probabilities = result.pop("logits")
    reference_logits = work / f"float32-logits-every{args.every}.npy"
    if args.codec == "float32" and not reference_logits.exists():
        np.save(reference_logits, log_probabilities)
    record = {"codec": args.codec, "settings": settings, "describe": describe, "every": args.every,
              "bytes_per_token_all_included": round(bytes_per_token, 3),
              "share_of_float32": round(bytes_per_token / baseline_codec("float32")[2](hidden_size, passage_len), 5),
              "f1": result["scores"]["f1"], "exact_match": result["scores"]["exact_match"],
              "questions": result["questions"], "question_windows": result["windows"],
              "encoded_windows": len(needed), "relative_squared_error": round(error, 5),
              "fisher_weighted_error": None if fisher_error is None else round(fisher_error, 5),
              "encode_cpu_seconds_per_window": round(encode_cpu / len(needed), 5),
              "decode": {**result["query_path"], "in_eval_seconds": result["decode_seconds"],
                         "windows_decoded_in_eval": result["windows_decoded"],
                         "eval_online_seconds": result["online_seconds"]},
              "codebook": codebook_info, "graphs": str(args.graphs), "model": str(args.model),
              "graph_sha256": {key: value["sha256"] for key, value in graph_set.manifest["graphs"].items()},
              "environment": environment}
    float32_record = out / f"{run_name('float32', {}, args.every)}.json"
    if float32_record.exists() and args.codec != "float32":
        float32_record = json.loads(float32_record.read_text())
        record["f1_delta"] = record["f1"] - float32_record["f1"]
        record["exact_match_delta"] = record["exact_match"] - float32_record["exact_match"]
    if reference is not None:
        record["answers_changed"] = sum(predictions[key] != reference[key] for key in predictions)
    if reference_logits.exists():
        record["kl_from_float32"] = round(mean_kl(np.load(reference_logits), log_probabilities), 5)
    out.mkdir(parents=True, exist_ok=True)
    partial = record_path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.rename(record_path)
    print(f"{name}: {bytes_per_token:.1f} B/token, F1 {record['f1']:.3f} (delta {record.get('f1_delta', float('nan')):+.3f}, "
          f"{record.get('answers_changed')} answers changed, KL {record.get('kl_from_float32')}), relative squared error {error:.4f}, "
          f"Fisher-weighted {fisher_error}", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    states = commands.add_parser("states")
    states.add_argument("graphs")
    states.add_argument("model")
    states.add_argument("work")
    states.add_argument("--train-paragraphs", type=int, default=1000)
    states.add_argument("--seed", type=int, default=0)
    fisher = commands.add_parser("fisher")
    for name in ("graphs", "model", "work"):
        fisher.add_argument(name)
    fisher.add_argument("--train-paragraphs", type=int, default=1000)
    fisher.add_argument("--questions", type=int, default=192)
    fisher.add_argument("--seed", type=int, default=0)
    runner = commands.add_parser("run")
    for name in ("graphs", "model", "work", "out"):
        runner.add_argument(name)
    runner.add_argument("--codec", required=True, help="float32, float16, int8, or a learned codec: pq, rq, binary")
    runner.add_argument("--setting", default="", help="the codec's settings, e.g. m=96,opq=true")
    runner.add_argument("--every", type=int, default=35, help="every Nth dev question (1: the full dev set)")
    runner.add_argument("--train-tokens", type=int, default=0, help="a seeded draw of the sample's tokens to learn "
                        "from (0: all of them)")
    runner.add_argument("--seed", type=int, default=0)
    tabler = commands.add_parser("table")
    tabler.add_argument("records", nargs="+", help="folders of run records")
    tabler.add_argument("--dtype-records", help="make cache-accuracy's records (results/passage-cache/f1-per-dtype)")
    tabler.add_argument("--every", type=int, default=35, help="the subset shown beside the full set")
    tabler.add_argument("--plot", required=True, help="the PNG to write")
    tabler.add_argument("--teacher", help="the same runs of the unsplit teacher (its k=0 graph set): its tables, "
                        "the student's loss against it cut into the split's and the codec's shares, its points")
    tabler.add_argument("--teacher-float32", help="a deformer-eval record of the teacher's float32 graphs on the full "
                        "dev set (results/reference-accuracy/teacher-float32.json): its reference where the "
                        "experiment's own float32 run on the full set is missing")
    args = parser.parse_args(argv)
    if args.command == "states":
        compute_states(args)
    elif args.command == "fisher":
        compute_fisher(args)
    elif args.command == "run":
        run(args)
    elif args.command == "table":  # reading records apart from running them (the table module's docstring)
        from passage_cache_codecs_table import table

        table(args)


if __name__ == "__main__":
    main()
