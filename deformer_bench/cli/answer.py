"""deformer-answer GRAPHS/: answer questions about your own passages through the DeFormer serving path."""

import argparse
import json
import os
import sys
from pathlib import Path

from ..answer import PASSAGES_FILE, QUESTIONS_FILE  # what a passages file is: the same for both commands
from ..api.answering import AnswerRequest, answer
from .common import ArgumentParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    result = answer(AnswerRequest(args.graphs, args.passages, args.passage_cache, questions=args.questions,
                                  output=args.output, tokenizer=args.tokenizer, doc_stride=args.doc_stride,
                                  cache_miss=args.cache_miss, batch_size=args.batch_size, progress=not args.quiet))
    if result.answers is None:
        print(json.dumps({"passage_cache": result.passage_cache}))
    elif args.output:
        print(json.dumps({"answers": len(result.answers), "output": str(args.output),
                          "passage_cache": result.passage_cache}))
    else:
        print(json.dumps(result.answers, indent=1, ensure_ascii=False))
        print(json.dumps({"passage_cache": result.passage_cache}), file=sys.stderr)
    return 0


def main(argv=None) -> None:
    # Serving runs graphs, not models: transformers serves only the tokenizer here, and with torch installed it
    # imports torch (~1 s and hundreds of MB) unless told not to. Set before transformers is first imported
    # (here, in the command's own process, not at import: a library user's process keeps its torch).
    os.environ.setdefault("USE_TORCH", "0")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # else: "None of PyTorch ... have been found"
    sys.exit(run_cli(answer_main, argv))


if __name__ == "__main__":
    main()
