"""How much of a fine-tuned teacher's accuracy survives the split before any student training?

A student starts as the unsplit teacher split at k. Its starting F1, for every k and both passage
position offsets, says where distillation starts from and which offset keeps the teacher's coordinates.
Same features, post-processing and official metric as `deformer-eval`, on the first N dev questions.

    python -m deformer_bench.cli.analysis.split_teacher --teacher ../runs/teacher/model \
        --dataset ../shared/data/squad/dev-v1.1.json.gz --count 300 --layers 1,2,3,4,5 --out results/split-teacher
"""

import json
import sys
from pathlib import Path

from tqdm import tqdm

from ...evaluate import pytorch_logits
from ...files import staged_directory
from ...model import POSITION_OFFSETS, Deformer
from ...squad.data import load_squad
from ...squad.features import featurize
from ...squad.metric import evaluate
from ...squad.postprocess import predictions_from_logits
from ...tokenizer import load_tokenizer
from ..common import parse_int_list
from .study_cli import run_study_cli

RESULTS_FILE = "split_teacher.json"
TEACHER_OFFSET = "question_len"  # the teacher reads [question; passage]: passage positions follow the question


def run_study(teacher_dir: Path, dataset: Path, count: int, layers: list, progress: bool = True,
              doc_stride: int = 128) -> dict:
    teacher = Deformer.from_pretrained(teacher_dir)
    question_len, passage_len = teacher.config.question_len, teacher.config.passage_len
    examples = load_squad(dataset)[:count]
    features = featurize(examples, load_tokenizer(teacher_dir), question_len, passage_len, doc_stride=doc_stride,
                         progress=False)
    cases = [(0, TEACHER_OFFSET)] + [(k, offset) for k in layers for offset in POSITION_OFFSETS]
    rows = []
    for layer, offset in tqdm(cases, desc="split teacher", disable=not progress):
        deformer = Deformer.from_pretrained(teacher_dir, layer=layer, passage_position_offset=offset)
        start, end = pytorch_logits(deformer, features, progress=False)
        scores = evaluate(examples, predictions_from_logits(examples, features, start, end, question_len))
        rows.append({"layer": layer, "offset": offset, **scores})
    return {"format_version": 1, "teacher_dir": str(teacher_dir), "teacher_fingerprint_sha256": teacher.fingerprint(),
            "dataset": str(dataset), "questions": len(examples), "windows": len(features),
            "question_len": question_len, "passage_len": passage_len, "doc_stride": doc_stride,
            "rows": rows}


def write_outputs(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    with staged_directory(out_dir) as staging:
        (staging / RESULTS_FILE).write_text(json.dumps(result, indent=1) + "\n")
        frame = pd.DataFrame(result["rows"])
        frame.to_csv(staging / "split_teacher.csv", index=False)
        figure, axis = plt.subplots(figsize=(6, 4))
        unsplit = frame[frame["layer"] == 0]["f1"].iloc[0]
        for offset, rows in frame[frame["layer"] > 0].groupby("offset"):
            axis.plot(rows["layer"], rows["f1"], marker="o", label=f"split, passage offset {offset}")
        axis.axhline(unsplit, color="k", linestyle="--", label="unsplit teacher")
        axis.set_xticks(sorted(frame[frame["layer"] > 0]["layer"].unique()))
        axis.set_xlabel("separation layer k")
        axis.set_ylabel(f"F1, first {result['questions']} dev questions")
        axis.set_title("the teacher split at k, before any training")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(staging / "split_teacher.png", dpi=110)
        plt.close(figure)


def add_arguments(parser) -> None:
    parser.add_argument("--teacher", type=Path, required=True, help="the unsplit teacher's model directory")
    parser.add_argument("--layers", default="1,2,3,4,5", help="separation layers to try (default 1,2,3,4,5)")
    parser.add_argument("--doc-stride", type=int, default=128, help="window overlap in tokens (default 128)")
    parser.add_argument("--quiet", action="store_true")


def run_from_args(args) -> dict:
    return run_study(args.teacher, args.dataset, args.count, parse_int_list(args.layers, "layers"),
                     progress=not args.quiet, doc_stride=args.doc_stride)


def main(argv=None) -> None:
    sys.exit(run_study_cli("deformer_bench.cli.analysis.split_teacher",
                           __doc__.split("\n\n")[0], add_arguments, run_from_args, write_outputs,
                           RESULTS_FILE, argv))


if __name__ == "__main__":
    main()
