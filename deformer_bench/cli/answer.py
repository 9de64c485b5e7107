"""deformer-answer GRAPHS/: answer questions about your own passages through the DeFormer serving path."""

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import DeformerBenchError
from ..files import write_text_atomically
from .common import (MAX_BATCH_SIZE, check_count, check_outputs, command_line, interrupts_name_an_unfinished_cache,
                     run_cli, tokenizer_input)


def build_parser() -> argparse.ArgumentParser:
    from ..answer import PASSAGES_FILE, QUESTIONS_FILE  # what a passages file is: the same for both commands

    parser = argparse.ArgumentParser(
        prog="deformer-answer",
        description="Answer questions about your own passages with an exported graph set: lower_passage runs "
                    "once per passage window into a passage cache (offline), then each question runs "
                    "lower_question and upper against its passage's cached states (online). Without "
                    "--questions, only builds (or checks) the cache.")
    parser.add_argument("graphs", type=Path, help="graph set directory written by deformer-export")
    parser.add_argument("--passages", type=Path, required=True, help=PASSAGES_FILE)
    parser.add_argument("--passage-cache", type=Path, required=True,
                        help="passage cache directory: built from every passage if it does not exist, read if it does")
    parser.add_argument("--questions", type=Path, help=QUESTIONS_FILE)
    parser.add_argument("--output", type=Path,
                        help="write the answers {question id: answer text} here (JSON; default: standard output)")
    parser.add_argument("--tokenizer", type=Path,
                        help="model directory holding the tokenizer (default: the one the graphs were exported from)")
    parser.add_argument("--doc-stride", type=int, default=128,
                        help="overlap of consecutive passage windows, in tokens (default 128, as in training)")
    parser.add_argument("--cache-miss", choices=("refuse", "compute"),
                        help="a question about a passage window the existing cache lacks: refuse (default, exit 2 "
                             "before any question runs: most often the wrong cache) or compute (lower_passage "
                             "runs online for it, as a cache miss costs in serving; counted, the cache is not "
                             "written)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def answer_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.output and not args.questions:
        raise DeformerBenchError("--output holds answers, and no --questions were given",
                                 "give --questions FILE, or drop --output to only build the cache")
    if args.cache_miss and not args.questions:
        raise DeformerBenchError("--cache-miss says what a question about a passage the cache lacks does, and no "
                                 "--questions were given", "give --questions FILE, or drop --cache-miss")
    check_count("--batch-size", args.batch_size, MAX_BATCH_SIZE)
    from exporters.manifest import load_graph_set

    from ..answer import answer_questions, cache_passages, graph_set_tokenizer, read_passages, read_questions

    check_outputs({"--output": args.output}, args.passage_cache,
                  {"the graph set": args.graphs, "the passages file": args.passages,
                   "the questions file": args.questions, **tokenizer_input(args.graphs, args.tokenizer)})
    graph_set = load_graph_set(args.graphs)
    tokenizer = graph_set_tokenizer(graph_set, args.tokenizer)
    passages = read_passages(args.passages, tokenizer)
    questions = read_questions(args.questions, passages, tokenizer) if args.questions else None  # before any work
    if not graph_set.manifest["model"].get("qa_head_trained", True):
        print(f"note: {args.graphs} was exported with a random QA head: its answers are meaningless", file=sys.stderr)
    progress = not args.quiet
    commands = cache_commands(args)
    with interrupts_name_an_unfinished_cache(args.passage_cache):
        if questions is None:
            _, record = cache_passages(graph_set, passages, tokenizer, args.passage_cache, args.doc_stride,
                                       args.batch_size, progress, commands)
            print(json.dumps({"passage_cache": record}))
            return 0
        result = answer_questions(graph_set, passages, questions, tokenizer, args.passage_cache, args.doc_stride,
                                  args.batch_size, progress, cache_miss=args.cache_miss or "refuse",
                                  commands=commands)
    misses = result.passage_cache["cache_misses"]
    if misses["question_windows"]:
        print(f"note: {misses['question_windows']} question windows ({misses['questions']} questions) asked about "
              f"passage windows not in {args.passage_cache}: computed online (--cache-miss compute); add the "
              f"passages with {append_command(args)}", file=sys.stderr)
    if args.output:
        write_text_atomically(args.output, json.dumps(result.answers, indent=1, ensure_ascii=False) + "\n")
        print(json.dumps({"answers": len(result.answers), "output": str(args.output),
                          "passage_cache": result.passage_cache}))
    else:
        print(json.dumps(result.answers, indent=1, ensure_ascii=False))
        print(json.dumps({"passage_cache": result.passage_cache}), file=sys.stderr)
    return 0


def cache_commands(args):
    """The commands this run's passage cache names: this run without questions (it builds the cache, and goes on
    with it after a kill), and how windows the cache lacks are added."""
    from ..passage_cache import CacheCommands

    start = command_line("deformer-answer", args.graphs, "--passages", args.passages, "--passage-cache",
                         args.passage_cache, "--doc-stride", args.doc_stride,
                         *(("--tokenizer", args.tokenizer) if args.tokenizer else ()))
    compute = ", or answer with --cache-miss compute (lower_passage runs online for them)" if args.questions else ""
    return CacheCommands(start, f"add these passages to it: {append_command(args)}{compute}; or give a new "
                                "--passage-cache directory")


def append_command(args) -> str:
    """The deformer-cache command that adds these passages' windows to the cache (in its own dtype)."""
    return command_line("deformer-cache", "build", args.graphs, "--passages", args.passages, "--out",
                        args.passage_cache, "--doc-stride", args.doc_stride,
                        *(("--tokenizer", args.tokenizer) if args.tokenizer else ()), "--append")


def main(argv=None) -> None:
    # Serving runs graphs, not models: transformers serves only the tokenizer here, and with torch installed it
    # imports torch (~1 s and hundreds of MB) unless told not to. Set before transformers is first imported
    # (here, in the command's own process, not at import: a library user's process keeps its torch).
    os.environ.setdefault("USE_TORCH", "0")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # else: "None of PyTorch ... have been found"
    sys.exit(run_cli(answer_main, argv))


if __name__ == "__main__":
    main()
