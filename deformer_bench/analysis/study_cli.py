"""The command line every analysis study shares.

Parse the study's own arguments plus `--dataset`, `--count` and `--out`; refuse an OUT that already
exists; describe the environment before the work (so the record names what ran it); run; write the
outputs whole or not at all. Typed errors become one message and exit code 2 (see cli.common.run_cli).
"""

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from ..environment import describe_environment
from ..errors import OutputExistsError
from ..files import check_distinct_paths


def run_study_cli(module: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                  run: Callable[[argparse.Namespace], dict], write_outputs: Callable[[dict, Path], None],
                  results_file: str, argv: Optional[list] = None) -> int:
    """`run(args)` returns the study's result dict; `write_outputs(result, out_dir)` writes it atomically."""
    from ..cli.common import run_cli

    def study_main(args_list):
        parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
        add_arguments(parser)
        parser.add_argument("--dataset", type=Path, required=True, help="SQuAD v1.1 .json or .json.gz")
        parser.add_argument("--count", type=int, default=300, help="first N questions (default 300)")
        parser.add_argument("--out", type=Path, required=True, help="a new directory for JSON, CSV and plot")
        args = parser.parse_args(args_list)
        if args.out.exists() or args.out.is_symlink():
            raise OutputExistsError(f"output directory {args.out} already exists", "give a new --out directory")
        # every path the study is given (dataset, model, teacher) is read: --out may not lie inside one
        check_distinct_paths({"--out": args.out}, {f"--{name.replace('_', '-')}": value for name, value
                                                   in vars(args).items() if isinstance(value, Path) and name != "out"})
        environment = describe_environment(["python", "-m", module,
                                            *(args_list if args_list is not None else sys.argv[1:])])
        result = run(args)
        write_outputs({**result, "environment": environment}, args.out)
        print(f"wrote {args.out}/{results_file}")

    return run_cli(study_main, argv)
