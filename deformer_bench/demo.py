"""`make demo`: the trained reference student answers real questions about real passages, through the commands a
user runs (deformer-export, then deformer-answer: passage cache offline, questions online).

    python -m deformer_bench.demo [--model reference/k3-kd-lrs] [--dataset DEV.json[.gz]] [--passages 3]
                                  [--work build/demo]

The passages are the first paragraph of each of the first N articles of a SQuAD file (the dev set: the model never
trained on it), the questions those asked about them. The graph set is exported once and kept under WORK, named by
the weights and the DeFormer configuration (a retrained model gets its own); the passage cache beside it, named
also by its passages and doc stride. The doc stride is the one the model trained with (its train_config.json),
else 128 (half a window for windows shorter than 256 tokens). Each command is
printed before it runs; at the end, each question with the answer and the gold answers, and EM / F1 over them.
"""

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

from .errors import DeformerBenchError, ModelDirError
from .files import check_distinct_paths, check_output_dir, write_text_atomically
from .readers import FormatError, read_json

DEFAULT_MODEL = Path("reference/k3-kd-lrs")
DEFAULT_DATASET = Path("../shared/data/squad/dev-v1.1.json.gz")


def demo_examples(dataset: Path, passages: int) -> list:
    """The Examples of the first paragraph of each of the first `passages` articles."""
    from .squad.data import load_squad

    chosen, titles = [], {}
    for example in load_squad(dataset):
        if example.title not in titles:
            if len(titles) == passages:
                break
            titles[example.title] = example.context
        if example.context == titles[example.title]:
            chosen.append(example)
    return chosen


def write_inputs(examples: list, work: Path) -> tuple:
    """passages.jsonl and questions.jsonl under `work`, in deformer-answer's formats."""
    passage_ids = {}
    for example in examples:
        passage_ids.setdefault(example.context, f"p{len(passage_ids)}")
    passages = "".join(json.dumps({"id": passage_id, "text": text}, ensure_ascii=False) + "\n"
                       for text, passage_id in passage_ids.items())
    questions = "".join(json.dumps({"id": example.id, "question": example.question,
                                    "passage_id": passage_ids[example.context]}, ensure_ascii=False) + "\n"
                        for example in examples)
    write_text_atomically(work / "passages.jsonl", passages)
    write_text_atomically(work / "questions.jsonl", questions)
    return work / "passages.jsonl", work / "questions.jsonl"


def run_command(*args) -> None:
    """One of the project's CLIs in a fresh process, shown as a user would type it; its failure ends the demo."""
    command = [str(arg) for arg in args]
    print("$ " + " ".join(shlex.quote(part) for part in command), flush=True)
    module = {"deformer-export": "deformer_bench.cli.export", "deformer-answer": "deformer_bench.cli.answer"}[command[0]]
    completed = subprocess.run([sys.executable, "-m", module, *command[1:]])
    if completed.returncode != 0:
        raise DeformerBenchError(f"{command[0]} failed (exit {completed.returncode}); its message is above",
                                 "fix what it names and run the demo again")


def show(examples: list, answers: dict) -> dict:
    from .squad.metric import evaluate, exact_match

    for example in examples:
        golds = sorted({answer.text for answer in example.answers})
        mark = "=" if any(exact_match(answers[example.id], gold) for gold in golds) else "~"
        print(f"\nQ: {example.question}\nA: {answers[example.id]!r}   {mark} gold: {' | '.join(map(repr, golds))}")
    scores = evaluate(examples, answers)
    print(f"\n{len(examples)} questions about {len({e.context for e in examples})} passages: "
          f"EM {scores['exact_match']:.1f}, F1 {scores['f1']:.1f} ('=': exact match with a gold answer)")
    return scores


def training_doc_stride(run_dir: Path, passage_len: int) -> int:
    """The doc stride the model trained with (train_config.json beside its model/), else 128 or, for windows
    too short for it, half a window."""
    try:
        return int(read_json(run_dir / "train_config.json", "training record")["config"]["doc_stride"])
    except (FormatError, ValueError, KeyError, TypeError):
        return min(128, passage_len // 2)


def digest(*parts) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12]


def demo(model_dir: Path, dataset: Path, passages: int, work: Path) -> dict:
    from .model import Deformer

    if not (model_dir / "config.json").is_file() and not (model_dir / "model" / "config.json").is_file():
        raise ModelDirError(f"{model_dir} is not a trained model directory (no config.json)",
                            "give --model a directory kept by `reference_models keep` (e.g. reference/k3-kd-lrs)")
    run_dir = model_dir
    model_dir = model_dir / "model" if (model_dir / "model" / "config.json").is_file() else model_dir
    check_output_dir(work, "--work")  # a file, a broken link or a file on the way
    # WORK gets the demo's own files and folders: it may hold the dataset, not be or lie inside what is read
    check_distinct_paths({"--work": work}, {"the model directory": run_dir, "the model's training record":
                                            model_dir.parent / "train_config.json", "the dataset": dataset},
                         roots=("--work",))
    examples = demo_examples(dataset, passages)  # a bad dataset fails before any export
    deformer = Deformer.from_pretrained(model_dir)
    doc_stride = training_doc_stride(model_dir.parent, deformer.config.passage_len)
    # Graphs are named by the weights and the whole DeFormer configuration, the cache also by its passages and
    # stride: another model, k, passage set or stride gets its own, never a stale one.
    model_key = digest(deformer.fingerprint(), sorted(deformer.identity().items()))
    inputs_key = digest(model_key, doc_stride, sorted({example.context for example in examples}))
    graphs, cache = work / f"graphs-{model_key}", work / f"cache-{inputs_key}"
    work.mkdir(parents=True, exist_ok=True)
    passages_file, questions_file = write_inputs(examples, work)
    if not (graphs / "manifest.json").is_file():
        run_command("deformer-export", model_dir, graphs)
    run_command("deformer-answer", graphs, "--passages", passages_file, "--questions", questions_file,
                "--passage-cache", cache, "--doc-stride", doc_stride, "--output", work / "answers.json", "--quiet")
    return show(examples, read_json(work / "answers.json", "answers"))


def demo_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deformer_bench.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"a trained DeFormer directory (default {DEFAULT_MODEL})")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help=f"a SQuAD file (default {DEFAULT_DATASET})")
    parser.add_argument("--passages", type=int, default=3, help="how many articles' first paragraphs (default 3)")
    parser.add_argument("--work", type=Path, default=Path("build/demo"),
                        help="where the graphs, the passage cache and the answers are kept (default build/demo)")
    args = parser.parse_args(argv)
    if args.passages < 1:
        raise DeformerBenchError(f"--passages must be at least 1, got {args.passages}", "e.g. --passages 3")
    demo(args.model, args.dataset, args.passages, args.work)
    return 0


def main(argv=None) -> None:
    from .cli.common import run_cli

    sys.exit(run_cli(demo_main, argv))


if __name__ == "__main__":
    main()
