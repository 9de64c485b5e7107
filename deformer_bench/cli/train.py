"""deformer-train: one training run, or a resumable queue of runs (teacher first, then students)."""

import argparse
import dataclasses
import sys
from pathlib import Path

from ..contracts.errors import ConfigError
from .common import ArgumentParser, run_cli
from .train_queue import config_class, make_config, run_queue

# Options of a single run; a queue sets these per run, so with --queue they are refused, never ignored.
SINGLE_RUN_OPTIONS = ("init", "output", "train_file", "teacher")
RESUMES = ("interrupted: nothing of the current step was kept; run the same command again to resume from the "
           "last checkpoint (runs already finished are kept)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="deformer-train", description=__doc__)
    parser.add_argument("--queue", type=Path, help="YAML queue of runs (see experiments/); resumes where it stopped")
    parser.add_argument("--runs-dir", type=Path, help="where queue runs live (default runs/)")
    parser.add_argument("--only", help="comma-separated run names of the queue to run")
    parser.add_argument("--init", type=Path, help="single run: initial weights (default: MiniLM-L6)")
    parser.add_argument("--output", type=Path, help="single run: output directory")
    parser.add_argument("--train-file", type=Path, help="single run: SQuAD v1.1 train JSON")
    parser.add_argument("--teacher", type=Path, help="single run: teacher model directory (KD/LRS)")
    for field in dataclasses.fields(config_class()):
        if field.name in ("output_dir", "init_dir", "train_file", "teacher_dir"):
            continue
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=_boolean if field.type is bool else field.type,
                            default=None)
    parser.add_argument("--quiet", action="store_true")
    return parser


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def train_main(argv=None) -> int:
    from ..model import default_model_dir  # deferred: torch
    from ..train import train

    args = build_parser().parse_args(argv)
    command = ["deformer-train", *(argv if argv is not None else sys.argv[1:])]
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class())
                 if getattr(args, field.name, None) is not None}
    if args.queue:
        given = [f"--{name.replace('_', '-')}" for name in (*SINGLE_RUN_OPTIONS, *overrides)
                 if getattr(args, name, None) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} set a single run; a queue takes each run's settings from its file",
                              "put them in the queue (its defaults or a run), or drop --queue")
        run_queue(args.queue, args.runs_dir or Path("runs"), args.only, command, progress=not args.quiet)
        return 0
    if args.only is not None or args.runs_dir is not None:
        raise ConfigError("--only and --runs-dir belong to a queue", "give --queue FILE, or drop them")
    if not args.output or not args.train_file:
        raise ConfigError("a single run needs --output and --train-file", "or give --queue FILE")
    settings = {**overrides, "output_dir": str(args.output), "train_file": str(args.train_file),
                "init_dir": str(args.init or default_model_dir())}
    if args.teacher:
        settings["teacher_dir"] = str(args.teacher)
    model_dir = train(make_config(settings), command, progress=not args.quiet)
    print(f"model: {model_dir}")
    return 0


def main(argv=None) -> None:
    sys.exit(run_cli(train_main, argv, interrupted=RESUMES))


if __name__ == "__main__":
    main()
