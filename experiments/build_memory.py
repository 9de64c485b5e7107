"""Issue 25, build memory: the peak resident memory of `deformer-cache build` over N synthetic passages, with the
deformer_bench of each given source tree (before and after the passage ids' check moved from a dict to 16-byte
digests in sorted arrays), measured by /usr/bin/time -v (its "Maximum resident set size"). What grows with the
passages is the point, not the model: a tiny random graph set (BERT, 2 layers, hidden 32, MiniLM's vocabulary and
tokenizer, k=1, question 8 + passage 32 tokens), one window per passage, int8 states. Also measured per tree: the
build's checking pass alone (PassageFile: every line read and its id checked, nothing built), and the same process
with no passages read (the imports and the tokenizer: the fixed part).

    git worktree add --detach ../before 10fe3ba; git worktree add --detach ../after 7974d8f
    python experiments/build_memory.py inputs WORK --passages 1000000
    python experiments/build_memory.py measure WORK/passages-1000000.jsonl WORK --tree before=../before \
        --tree after=../after --parallel --out results/passage-cache/2026-12-05-build-memory/build_memory.json

`measure` runs every command at niceness 10 (`nice -n 10`, less the script's own: started as a pausable job under
`nice -n 10`, its commands stay at 10, not 19), in the tree and with PYTHONPATH set to it (its deformer_bench is
imported ahead of an editable install: the record names the file each tree imports); the trees share this
Python and its packages. `--runs build` measures the builds alone (a whole build over 1M passages takes minutes of
CPU a tree). `--parallel` runs the trees' commands of one kind at once (peak memory is each process's own). The
caches go in WORK and are removed after each build (their size on disk is recorded). The record is written after
each run.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

TINY_BERT = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128)
QUESTION_LEN, PASSAGE_LEN, LAYER, DOC_STRIDE = 8, 32, 1, 16
WORDS_PER_PASSAGE = 16  # ~16-20 tokens: one window of 32 with [SEP]s
NICENESS = 10  # every measured command's
TIME_FIELDS = {"max_rss_kib": "Maximum resident set size (kbytes)", "elapsed": "Elapsed (wall clock) time",
               "user_seconds": "User time (seconds)", "system_seconds": "System time (seconds)"}


def make_inputs(work: Path, passages: int, seed: int = 0) -> None:
    """WORK/model (tiny BERT QA, MiniLM's tokenizer), WORK/graphs (its export), WORK/passages-N.jsonl."""
    work.mkdir(parents=True, exist_ok=True)
    model, graphs = work / "model", work / "graphs"
    if not graphs.exists():
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

        from deformer_bench.model import default_model_dir

        torch.manual_seed(seed)
        BertForQuestionAnswering(BertConfig(**TINY_BERT)).eval().save_pretrained(model)
        AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(model)
        subprocess.run([sys.executable, "-m", "deformer_bench.cli.export", str(model), str(graphs), "--layer",
                        str(LAYER), "--question-len", str(QUESTION_LEN), "--passage-len", str(PASSAGE_LEN),
                        "--quiet"], check=True)
    vocabulary = [word for word in (model / "vocab.txt").read_text().split("\n") if word.isalpha() and len(word) > 2]
    rng = random.Random(seed)
    path = work / f"passages-{passages}.jsonl"
    with open(path, "w") as out:  # ids as UUIDs: 36 characters, distinct; texts of random words: distinct windows
        for _ in range(passages):
            passage_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            text = " ".join(rng.choices(vocabulary, k=WORDS_PER_PASSAGE)) + "."
            out.write(json.dumps({"id": passage_id, "text": text}) + "\n")
    print(path)


def check_pass(passages: str, graphs: str) -> None:
    """The build's checking pass alone, as build_cache runs it (an empty `passages`: the imports and tokenizer)."""
    import deformer_bench
    from deformer_bench.answer import graph_set_tokenizer
    from deformer_bench.api.caching import PassageFile
    from deformer_bench.contracts.manifest import load_graph_set

    tokenizer = graph_set_tokenizer(load_graph_set(graphs))
    count = PassageFile(Path(passages), tokenizer).count if passages else 0
    print(json.dumps({"passages": count, "deformer_bench": deformer_bench.__file__}))


def nice_increment() -> int:
    """What `nice -n` adds to this process's niceness for a command to run at NICENESS (nice adds to the caller's:
    a script started under `nice -n 10` would run its commands at 19, level with the machine's background job)."""
    return max(0, NICENESS - os.nice(0))


def timed(command: list, tree: Path) -> dict:
    """Run `command` (at NICENESS, the tree's deformer_bench first on the path) under /usr/bin/time -v."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    # run in the tree: `python -m` puts the working directory ahead of PYTHONPATH on sys.path
    completed = subprocess.run(["/usr/bin/time", "-v", "nice", "-n", str(nice_increment()), *map(str, command)],
                               env=environment,
                               capture_output=True, text=True, cwd=tree)
    if completed.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    report = {}
    for key, label in TIME_FIELDS.items():
        value = re.search(rf"^\s*{re.escape(label)}.*: (\S+)$", completed.stderr, re.M).group(1)
        report[key] = value if key == "elapsed" else float(value)
    report["max_rss_mib"] = round(report["max_rss_kib"] / 1024, 1)
    return {**report, "stdout": completed.stdout.strip()[-2000:]}


def imported(tree: Path) -> str:
    """The deformer_bench a command run with this tree's PYTHONPATH imports (the tree's own, not the editable
    install's)."""
    return subprocess.run([sys.executable, "-c", "import deformer_bench; print(deformer_bench.__file__)"],
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          cwd=tree).stdout.strip()


def tree_commit(tree: Path) -> str:
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout
    return commit.strip() + (" (dirty)" if dirty.strip() else "")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(passages: Path, work: Path, trees: dict, out: Path, runs: tuple, parallel: bool = False) -> None:
    """Every run of `runs` (baseline, check, build) for each tree; `parallel`: the trees' runs of one kind at the same
    time (on a shared machine: peak memory is each process's own; the times are not comparable with a lone run).
    The record is written after each kind of run."""
    from concurrent.futures import ThreadPoolExecutor

    from deformer_bench.environment import describe_environment

    count = sum(1 for _ in open(passages))
    record = {"environment": describe_environment(["python", *sys.argv]), "passages_file": str(passages),
              "passages": count, "passages_bytes": passages.stat().st_size, "graphs": str(work / "graphs"),
              "parallel": parallel, "load_average_at_start": os.getloadavg(),
              "trees": {label: {"path": str(tree), "commit": tree_commit(tree), "imports": imported(tree)}
                        for label, tree in trees.items()}, "runs": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    for run in runs:
        with ThreadPoolExecutor(len(trees) if parallel else 1) as pool:
            for result in pool.map(lambda item: one_run(run, *item, passages, work), trees.items()):  # in order
                print(json.dumps({key: value for key, value in result.items() if key != "stdout"}), flush=True)
                record["runs"].append(result)
                record["difference_bytes_a_passage"] = differences(record["runs"], list(trees), count)
                out.write_text(json.dumps(record, indent=1) + "\n")  # a run at a time: minutes each at 1M
    print(out)


def one_run(run: str, label: str, tree: Path, passages: Path, work: Path) -> dict:
    cache = work / f"cache-{label}"
    if run == "build":
        shutil.rmtree(cache, ignore_errors=True)
        command = [sys.executable, "-m", "deformer_bench.cli.cache", "build", work / "graphs", "--passages", passages,
                   "--out", cache, "--dtype", "int8", "--doc-stride", DOC_STRIDE, "--quiet"]
    else:  # the checking pass alone, or (baseline) no passages read
        command = [sys.executable, Path(__file__).resolve(), "check-pass", passages if run == "check" else "",
                   work / "graphs"]
    result = {"tree": label, "run": run, "load_average_before": os.getloadavg(),
              "command": f"cd {tree}; PYTHONPATH={tree} /usr/bin/time -v nice -n {nice_increment()} "
              + " ".join(map(str, command)),
              **timed(command, tree)}
    if run == "build":
        result["cache_bytes"] = folder_bytes(cache)
        shutil.rmtree(cache)
    return result


def differences(runs: list, labels: list, count: int) -> dict:
    """{run: (peak of the first tree - peak of the second) / passages, in bytes}, for runs measured in both; with
    more than two trees, {"FIRST-OTHER": such a dict} for every other tree."""
    peaks = {(run["tree"], run["run"]): run["max_rss_kib"] for run in runs}

    def against(other: str) -> dict:
        return {kind: round((peaks[(labels[0], kind)] - peaks[(other, kind)]) * 1024 / count, 1)
                for kind in dict.fromkeys(run["run"] for run in runs)
                if (labels[0], kind) in peaks and (other, kind) in peaks}

    if len(labels) == 2:
        return against(labels[1])
    return {f"{labels[0]}-{other}": against(other) for other in labels[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inputs = commands.add_parser("inputs")
    inputs.add_argument("work", type=Path)
    inputs.add_argument("--passages", type=int, default=1_000_000)
    checking = commands.add_parser("check-pass")
    checking.add_argument("passages")
    checking.add_argument("graphs")
    measuring = commands.add_parser("measure")
    measuring.add_argument("passages", type=Path)
    measuring.add_argument("work", type=Path)
    measuring.add_argument("--tree", action="append", required=True, metavar="LABEL=PATH")
    measuring.add_argument("--runs", default="baseline,check,build")
    measuring.add_argument("--out", type=Path, required=True)
    measuring.add_argument("--parallel", action="store_true", help="run the trees' runs of one kind at once")
    args = parser.parse_args()
    if args.command == "inputs":
        make_inputs(args.work, args.passages)
    elif args.command == "check-pass":
        check_pass(args.passages, args.graphs)
    else:
        trees = dict((label, Path(path).resolve()) for label, path in (tree.split("=", 1) for tree in args.tree))
        measure(args.passages, args.work, trees, args.out, tuple(args.runs.split(",")), args.parallel)


if __name__ == "__main__":
    main()
