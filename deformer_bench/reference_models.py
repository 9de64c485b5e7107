"""Trained models in float16: how the reference models are kept (in the repository) and how weights travel to and
from a lent GPU machine (scripts/gpu-train.sh), whose transfers are capped in size.

    python -m deformer_bench.reference_models keep RUN_DIR OUT_DIR     a finished deformer-train run's model in
                                                                       float16, with its eval and training records
    python -m deformer_bench.reference_models base MODEL_DIR OUT_DIR   a base encoder (MiniLM-L6) in float16, with
                                                                       its tokenizer: the start of a GPU training

Stored in float16, loaded back in float32 (model.load_qa_model): halving the weights moves a QA logit by a few
thousandths; `keep` measures it on random full-length windows and records it (reference.json).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from .errors import ModelDirError, OutputExistsError
from .files import check_distinct_paths, staged_directory, write_text_atomically

RECORD_FILE = "reference.json"
RUN_RECORDS = ("eval.json", "train_config.json", "train_log.jsonl")
HALF_TOLERANCE = 0.05  # max |logit difference| of the float16 copy, loaded in float32, from the float32 model


def probe_inputs(deformer, count: int = 4, seed: int = 0) -> tuple:
    """Full-length random windows: [count, Lq] and [count, Lp] ids with all-ones masks."""
    generator = torch.Generator().manual_seed(seed)
    vocab, config = deformer.qa_model.config.vocab_size, deformer.config
    question = torch.randint(3, vocab, (count, config.question_len), generator=generator)
    passage = torch.randint(3, vocab, (count, config.passage_len), generator=generator)
    return question, torch.ones_like(question), passage, torch.ones_like(passage)


def max_logit_difference(first, second) -> float:
    inputs = probe_inputs(first)
    with torch.no_grad():
        return max(float((a - b).abs().max()) for a, b in zip(first(*inputs), second(*inputs)))


def keep(run_dir: Path, out_dir: Path) -> dict:
    """The run's model in float16 under OUT_DIR (a DeFormer directory: weights, deformer.json, tokenizer), its
    records beside it, and reference.json: where it came from and how far the float16 copy's logits moved."""
    from .model import Deformer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "model" / "config.json").is_file():
        raise ModelDirError(f"{run_dir} holds no finished deformer-train run (no model/config.json)",
                            "give a run directory of deformer-train whose training finished")
    if out_dir.exists() or out_dir.is_symlink():
        raise OutputExistsError(f"{out_dir} exists", "give a new directory")
    check_distinct_paths({"OUT_DIR": out_dir}, {"the run directory": run_dir})
    trained = Deformer.from_pretrained(run_dir / "model").eval()
    with staged_directory(out_dir) as staging:
        trained.save_pretrained(staging / "model", dtype=torch.float16)
        kept = Deformer.from_pretrained(staging / "model").eval()
        difference = max_logit_difference(trained, kept)
        if difference > HALF_TOLERANCE:
            raise ModelDirError(f"the float16 copy of {run_dir} moves logits by {difference:.3g} "
                                f"(more than {HALF_TOLERANCE})", "keep this model in float32")
        for name in RUN_RECORDS:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, staging / name)
        record = {"source_run": run_dir.name, "stored_dtype": "float16", "loaded_dtype": "float32",
                  "max_abs_logit_difference_from_float32": difference,
                  "model_fingerprint_sha256_float32": trained.fingerprint(),
                  "model_fingerprint_sha256_as_kept": kept.fingerprint()}
        write_text_atomically(staging / RECORD_FILE, json.dumps(record, indent=1) + "\n")
    return record


def base(model_dir: Path, out_dir: Path) -> None:
    """A plain Hugging Face encoder directory in float16, with its tokenizer (what a training's `init` reads)."""
    from transformers import AutoModel, AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelDirError(f"{model_dir} is not a model directory (no config.json)", "give a Hugging Face model "
                            "directory, e.g. MiniLM-L6's")
    if out_dir.exists() or out_dir.is_symlink():
        raise OutputExistsError(f"{out_dir} exists", "give a new directory")
    check_distinct_paths({"OUT_DIR": out_dir}, {"the model directory": model_dir})
    with staged_directory(out_dir) as staging:
        AutoModel.from_pretrained(model_dir, dtype=torch.float32).to(torch.float16).save_pretrained(staging)
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(staging)


def reference_main(argv=None) -> int:
    from .model import default_model_dir

    parser = argparse.ArgumentParser(prog="python -m deformer_bench.reference_models", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keep_parser = commands.add_parser("keep", help="a finished run's model in float16, with its records")
    keep_parser.add_argument("run_dir", type=Path)
    keep_parser.add_argument("out_dir", type=Path)
    base_parser = commands.add_parser("base", help="a base encoder in float16, with its tokenizer")
    base_parser.add_argument("model_dir", type=Path, nargs="?", help="default: MiniLM-L6")
    base_parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "keep":
        record = keep(args.run_dir, args.out_dir)
        print(f"kept {args.run_dir} in float16 at {args.out_dir} (logits within "
              f"{record['max_abs_logit_difference_from_float32']:.2g} of float32)")
    else:
        base(args.model_dir or default_model_dir(), args.out_dir)
        print(f"wrote {args.out_dir}")
    return 0


def main(argv=None) -> None:
    from .cli.common import run_cli

    sys.exit(run_cli(reference_main, argv))


if __name__ == "__main__":
    main()
