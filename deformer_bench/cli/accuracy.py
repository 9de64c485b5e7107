"""The accuracy table of a training queue: F1/EM per run, F1 drop against the teacher, FLOP speed-up per k.

    python -m deformer_bench.cli.accuracy --runs-dir ../runs --out results/accuracy

Reads only what the runs saved (train_config.json, train_log.jsonl, eval.json, and eval-onnx.json where
the run's exported graphs were evaluated with `deformer-eval --onnx ... --output RUN/eval-onnx.json`);
writes accuracy.json, accuracy.csv, accuracy.md (the table), accuracy.png (the analogue of the paper's
separation-layer figure) and training.png (each run's training CE).

With `--bench RESULTS_DIR` (a `deformer-bench` run of the same model shape and lengths), each student also
gets the measured batch-1 speed-up of its k beside the FLOP ideal.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from ..bench.flops import path_flops
from ..contracts.errors import ConfigError, DeformerBenchError
from ..contracts.readers import read_json, read_json_lines
from ..files import check_distinct_paths, save_figure_atomically, write_text_atomically
from .common import run_cli
from .train_queue import model_reference

TEACHER_LAYER = 0
ONNX_EVAL_FILE = "eval-onnx.json"
FINAL_STEPS = 300  # the training CE of a run is its mean over this many last steps


def run_record(run_dir: Path) -> dict:
    train_record = read_json(run_dir / "train_config.json", "training record")
    scores = read_json(run_dir / "eval.json", "evaluation record")
    config = train_record["config"]
    shape = model_shape(run_dir, train_record)
    log = read_log(run_dir / "train_log.jsonl")
    flops = path_flops(shape["num_layers"], config["layer"], shape["hidden_size"], shape["intermediate_size"],
                       config["question_len"], config["passage_len"])
    return {
        "run": run_dir.name, "layer": config["layer"],
        # The teacher always reads [question; passage]; older records name the students' default then ("zero").
        "passage_position_offset": "question_len" if config["layer"] == TEACHER_LAYER
        else config.get("passage_position_offset", "zero"),
        "init": init_name(Path(config["init_dir"]), run_dir.parent),
        "gamma": config["gamma"], "alpha": config["alpha"],
        "beta": config["beta"], "f1": scores["f1"], "exact_match": scores["exact_match"],
        "dev_questions": scores["questions"], "train_examples": train_record["examples"],
        "train_windows": train_record["features"], "epochs": config["epochs"], "batch_size": config["batch_size"],
        "question_len": config["question_len"], "passage_len": config["passage_len"],
        **shape,
        "train_minutes": log[-1]["elapsed_s"] / 60 if log else None,
        "final_train_ce": final_train_ce(log),
        "train_ce_curve": [[entry["step"], entry["ce"]] for entry in log],  # for training.png; not in the CSV
        "flop_ideal_speedup": flops.ideal_speedup, "command": train_record["command"],
        # Commits the run was trained at, one per start (runs from before this record kept none).
        "train_commits": [start["environment"]["git"]["commit"] for start in train_record.get("starts", [])],
        **onnx_scores(run_dir),
    }


SHAPE_KEYS = ("num_layers", "hidden_size", "intermediate_size")


def model_shape(run_dir: Path, train_record: dict, depth: int = 0) -> dict:
    """num_layers, hidden_size, intermediate_size of a run's model: its saved model's config, else what the training
    record says (records since train.model_record), else its init model's (a run retrains its init model, shape and
    all): a run of the same folder, by name as init_name finds it, or the init path as recorded. A run's record
    copied without its model (results/accuracy/runs/) is then enough to table it."""
    if (run_dir / "model" / "config.json").exists():
        return shape_of_config(read_json(run_dir / "model" / "config.json", "model config"))
    if "model_shape" in train_record:
        return checked_shape(train_record["model_shape"], run_dir / "train_config.json")
    init_dir = Path(train_record["config"]["init_dir"])
    source_run = run_dir.parent / init_dir.parent.name
    if (init_dir.name == "model" and source_run != run_dir and depth < 100
            and (source_run / "train_config.json").is_file()):
        return model_shape(source_run, read_json(source_run / "train_config.json", "training record"), depth + 1)
    init_config = init_model_dir(init_dir, run_dir.parent) / "config.json"
    if not init_config.is_file():
        relative = "" if init_dir.is_absolute() else f" (a relative path starts at the current folder, {Path.cwd()})"
        raise DeformerBenchError(f"{run_dir} holds no model/, its training record no model_shape, and its init "
                                 f"model {init_config.parent} is not here to take the shape from{relative}",
                                 "give the run folder with its model/, or run from the folder its init path starts at")
    return shape_of_config(read_json(init_config, "model config"))


def shape_of_config(config: dict) -> dict:
    """SHAPE_KEYS of a Hugging Face config.json."""
    return {"num_layers": config["num_hidden_layers"], "hidden_size": config["hidden_size"],
            "intermediate_size": config["intermediate_size"]}


def checked_shape(shape, path: Path) -> dict:
    """A recorded model_shape: exactly SHAPE_KEYS, each a positive whole number (a damaged record would otherwise
    give a wrong FLOP ideal, or overwrite the table's columns)."""
    if not (isinstance(shape, dict) and set(shape) == set(SHAPE_KEYS) and all(
            isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in shape.values())):
        raise DeformerBenchError(f"{path}: model_shape is {shape!r}, not {', '.join(SHAPE_KEYS)} as positive numbers",
                                 "restore the record from git, or give the run folder with its model/")
    return dict(shape)


def init_model_dir(init_dir: Path, runs_dir: Path) -> Path:
    """Where a run's init model is on this machine: the default model package installed here when the record names
    it in another venv (train_queue.model_reference), else the path as recorded."""
    if not init_dir.is_dir() and model_reference(init_dir, runs_dir) == "the default model":
        from ..model import default_model_dir  # deferred: torch

        try:
            return default_model_dir()
        except DeformerBenchError:  # not installed here either: the caller says the init model is not here
            return init_dir
    return init_dir


def init_name(init_dir: Path, runs_dir: Path) -> str:
    """The run a run started from ("teacher", or e.g. "k4-kd-lrs" for a continuation), else the directory."""
    # By name, not by full path: a runs directory that was copied or moved keeps its run names.
    if init_dir.name == "model" and (runs_dir / init_dir.parent.name / "train_config.json").is_file():
        return init_dir.parent.name
    return str(init_dir)


def read_log(path: Path) -> list:
    """Logged steps in order, one entry per step (a step logged twice across a resume keeps its last line)."""
    by_step = {}
    for entry in read_json_lines(path, "training log"):
        by_step[entry["step"]] = entry
    return [by_step[step] for step in sorted(by_step)]


def final_train_ce(log: list):
    """Mean logged CE of the last FINAL_STEPS steps: how well the run fits the (shared) training data."""
    if not log:
        return None
    last = [entry["ce"] for entry in log if entry["step"] > log[-1]["step"] - FINAL_STEPS]
    return sum(last) / len(last)


def onnx_scores(run_dir: Path) -> dict:
    """F1/EM of the run's exported graph set, when it was evaluated; empty otherwise."""
    path = run_dir / ONNX_EVAL_FILE
    if not path.exists():
        return {}
    record = read_json(path, "evaluation record")
    from ..model import Deformer  # deferred: torch

    if record["model_fingerprint_sha256"] != Deformer.from_pretrained(run_dir / "model").fingerprint():
        raise DeformerBenchError(f"{path} scores another model than {run_dir / 'model'}",
                                 "evaluate this run's exported graphs again, or delete the stale file")
    return {"onnx_f1": record["f1"], "onnx_exact_match": record["exact_match"],
            "onnx_command": record["environment"]["command"]}


def bench_speedups(bench: dict, records: list) -> dict:
    """{k: measured batch-1 speed-up of the online path} from a deformer-bench run (its results.json) matching the runs.

    The bench must have measured the runs' model shape (layers, hidden, intermediate size) at their
    question and passage lengths: speed depends on those, not on the trained weights. A k the bench did
    not measure is left out (its cell stays empty); a bench of another shape or lengths is refused.
    """
    students = [record for record in records if record["layer"] != TEACHER_LAYER]
    wanted = {shape_key(record) for record in students}
    if len(wanted) > 1:
        raise DeformerBenchError(f"the runs differ in model shape or lengths ({sorted(wanted)})",
                                 "join a bench to runs of one model shape and one pair of lengths")
    speedups = {}
    for config in bench["configs"]:
        model, deformer = config["model"], config["deformer"]
        key = (model["num_layers"], model["hidden_size"], model["intermediate_size"],
               deformer["question_len"], deformer["passage_len"])
        if key not in wanted:
            continue
        batch = min(config["batches"], key=lambda entry: entry["batch_size"])
        online = batch["speedup_vs_unsplit"]["online"]
        across = batch["across_processes"]["speedup_vs_unsplit"]["online"]  # per timing process (one in format 1)
        speedups[deformer["layer"]] = {
            "measured_speedup": online["ratio"], "measured_speedup_ci95_low": online["ci95_low"],
            "measured_speedup_ci95_high": online["ci95_high"], "measured_batch_size": batch["batch_size"],
            "measured_processes": len(across["values"]), "measured_speedup_process_min": across["min"],
            "measured_speedup_process_max": across["max"],
        }
    if not speedups and wanted:
        layers, hidden, intermediate, question_len, passage_len = next(iter(wanted))
        raise DeformerBenchError(
            f"{bench['directory']} measured no model of the runs' shape ({layers} layers, hidden {hidden}, intermediate "
            f"{intermediate}) at their lengths (question {question_len} + passage {passage_len})",
            f"run deformer-bench --question-len {question_len} --passage-len {passage_len} --layer "
            f"{','.join(str(k) for k in sorted({record['layer'] for record in students}))} on that model",
        )
    return speedups


def shape_key(record: dict) -> tuple:
    return (record["num_layers"], record["hidden_size"], record["intermediate_size"], record["question_len"],
            record["passage_len"])


def load_bench(bench_dir: Path) -> dict:
    """A deformer-bench results.json (of the current format, whichever it was written in), with the directory it was
    read from."""
    from ..report import load_results  # deferred: pandas

    return {**load_results(bench_dir).as_json(), "directory": str(bench_dir)}


def bench_provenance(bench: dict) -> dict:
    """What accuracy.json says of the bench it joined: where, by which command, at which commit, on what."""
    environment = bench["environment"]
    return {"directory": bench["directory"], "command": environment["command"], "commit": environment["git"]["commit"],
            "profile": bench["profile"]["name"], "cpu": environment["cpu"]["model"],
            "onnxruntime": environment["packages"].get("onnxruntime")}


def collect(runs_dir: Path, bench: dict = None, saved: list = ()) -> list:
    """One record per evaluated run, with its F1 drop; `bench` (load_bench) adds measured speed-ups. `saved` (records
    of an accuracy.json) come first: a run of the same name in runs_dir replaces its saved record, and the teacher
    (k=0) the drops are taken from may be a saved one (a queue of students distilled from a shipped teacher)."""
    records = {record["run"]: record for record in saved}
    if runs_dir is not None:
        records.update((path.parent.name, run_record(path.parent)) for path in sorted(runs_dir.glob("*/eval.json")))
    records = list(records.values())
    teachers = [r for r in records if r["layer"] == TEACHER_LAYER]
    if not teachers:
        raise DeformerBenchError(f"no evaluated teacher run (k=0) in {runs_dir}", "train and evaluate the teacher first")
    for record in records:
        record["f1_drop"] = teachers[0]["f1"] - record["f1"]
    return join_bench(records, bench)


def join_bench(records: list, bench: dict = None) -> list:
    """Each student gets the measured speed-up of its k from `bench` (load_bench); no bench, no change."""
    if bench is not None:
        speedups = bench_speedups(bench, records)
        for record in records:
            if record["layer"] != TEACHER_LAYER:
                record.update(speedups.get(record["layer"], {}))
    return records


MEASURED = ("measured_speedup", "measured_speedup_ci95_low", "measured_speedup_ci95_high", "measured_batch_size",
            "measured_processes", "measured_speedup_process_min", "measured_speedup_process_max")


def saved_records(path: Path, bench: dict = None) -> tuple:
    """(records, bench source) of an accuracy.json: the records with the measured speed-ups of `bench` in place of
    the old ones; the source of the speed-ups kept (what accuracy.json says of its bench, None with a new bench)."""
    document = read_json(path, "accuracy results", hint="give the accuracy.json of a results/accuracy directory")
    records = document.get("runs") if isinstance(document, dict) else None
    if not isinstance(records, list) or not all(isinstance(record, dict) and "layer" in record for record in records):
        raise DeformerBenchError(f"{path} is not an accuracy.json written by this module",
                                 "give the accuracy.json of a results/accuracy directory")
    records = [{key: value for key, value in record.items() if key not in MEASURED or bench is None}
               for record in records]
    return join_bench(records, bench), (None if bench is not None else document.get("bench"))


def loss_name(record: dict) -> str:
    terms = [(record["gamma"], "CE"), (record["alpha"], "KD"), (record["beta"], "LRS")]
    used = [(weight, name) for weight, name in terms if weight]
    if len(used) == 1 and used[0][0] == 1:
        return used[0][1]
    return " + ".join(f"{weight:g} {name}" for weight, name in used)


def table_order(record: dict) -> tuple:
    """Teacher first, then by k, distilled before undistilled, then by name."""
    return record["layer"], -record["alpha"], -record["beta"], record["run"]


def markdown_table(records: list) -> str:
    """The table of accuracy.md: one row per run, teacher first, then by k and loss."""
    def cell(value, form):
        return "-" if value is None else form.format(value)

    rows = ["| run | k | starts from | passage positions from | loss | budget | F1 | EM | F1 drop | ONNX F1 "
            f"| FLOP speed-up | measured speed-up (batch 1) | train CE (last {FINAL_STEPS} steps) | training | commit |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for record in sorted(records, key=table_order):
        drop = "-" if record["layer"] == TEACHER_LAYER else f"{record['f1_drop']:.2f}"
        first_position = "question end" if record["passage_position_offset"] == "question_len" else "0"
        start = "/".join(Path(record["init"]).parts[-2:])  # a run's name, or the end of a directory's path
        rows.append(f"| {record['run']} | {record['layer']} | {start} | {first_position} | {loss_name(record)} | "
                    f"{budget(record)} | {record['f1']:.2f} | {record['exact_match']:.2f} | {drop} | {cell(record.get('onnx_f1'), '{:.2f}')} | "
                    f"{record['flop_ideal_speedup']:.2f}x | {measured_cell(record)} | "
                    f"{cell(record['final_train_ce'], '{:.2f}')} | "
                    f"{cell(record['train_minutes'], '{:.1f} min')} | {commits(record)} |")
    return "\n".join(rows) + "\n"


def budget(record: dict) -> str:
    """What a run was trained on: questions x epochs, and its optimizer steps where the record names the batch."""
    cell = f"{record['train_examples']:,} questions x {record['epochs']:g}"
    if record.get("batch_size"):
        cell += f", {math.ceil(math.ceil(record['train_windows'] / record['batch_size']) * record['epochs']):,} steps"
    return cell


def commits(record: dict) -> str:
    """The commits a run was trained at, one per start, short; '-' for runs from before the record kept them."""
    return ", ".join(dict.fromkeys(commit[:7] for commit in record.get("train_commits") or ())) or "-"


def measured_cell(record: dict) -> str:
    if "measured_speedup" not in record or record["measured_speedup"] != record["measured_speedup"]:  # absent, NaN
        return "-"
    cell = (f"{record['measured_speedup']:.2f}x "
            f"[{record['measured_speedup_ci95_low']:.2f}, {record['measured_speedup_ci95_high']:.2f}]")
    if record.get("measured_processes", 1) > 1:
        cell += (f", {record['measured_processes']} processes {record['measured_speedup_process_min']:.2f}-"
                 f"{record['measured_speedup_process_max']:.2f}")
    return cell


OUTPUT_FILES = ("accuracy.json", "accuracy.md", "accuracy.csv", "accuracy.png", "training.png")


def write(records: list, out_dir: Path, bench_source: dict = None) -> None:
    """The table, CSV, JSON and plots; `bench_source` (bench_provenance) is what accuracy.json says of a joined bench."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out_dir / "accuracy.json", json.dumps({"format_version": 1, "bench": bench_source, "runs": records}, indent=1) + "\n")
    write_text_atomically(out_dir / "accuracy.md", markdown_table(records))
    frame = pd.DataFrame(records)
    columns = [column for column in frame.columns
               if not column.endswith("command") and column not in ("train_commits", "train_ce_curve")]
    write_text_atomically(out_dir / "accuracy.csv", frame[columns].to_csv(index=False))
    students = figure_students(frame)
    figure, axis = plt.subplots(figsize=(6, 4))
    for (start, alpha, beta, offset), rows in students.groupby(["start", "alpha", "beta", "passage_position_offset"]):
        label = (f"KD + {beta:g} LRS" if alpha and beta else "KD only" if alpha else f"{beta:g} LRS only" if beta
                 else "no distillation")
        label += ", passage positions from 0" if offset == "zero" else ""
        label += ", from pre-trained" if start == "pre-trained" else ""
        rows = rows.sort_values("layer")
        axis.plot(rows["layer"], rows["f1_drop"], marker="o", label=f"F1 drop, {label}")
    axis.set_xlabel("separation layer k")
    axis.set_xticks(sorted(students["layer"].unique()))
    drops = students["f1_drop"] if len(students) else pd.Series([0.0])
    # from 0 (or below, for a student better than its teacher) with head room for the legend
    axis.set_ylim(min(0.0, drops.min()), 1.35 * drops.max() if drops.max() > 0 else 1.0)
    axis.set_ylabel("F1 drop against the unsplit teacher")
    twin = axis.twinx()
    ideal = students.drop_duplicates("layer").sort_values("layer")
    twin.plot(ideal["layer"], ideal["flop_ideal_speedup"], "k--", marker="x", label="FLOP speed-up")
    if "measured_speedup" in ideal and ideal["measured_speedup"].notna().any():
        measured = ideal[ideal["measured_speedup"].notna()]
        ci = [measured["measured_speedup"] - measured["measured_speedup_ci95_low"],
              measured["measured_speedup_ci95_high"] - measured["measured_speedup"]]
        twin.errorbar(measured["layer"], measured["measured_speedup"], yerr=ci, fmt="k-", marker="s",
                      markersize=4, capsize=3, label="measured speed-up, batch 1 (95% CI)")
    speedups = ideal[[column for column in ("flop_ideal_speedup", "measured_speedup_ci95_high") if column in ideal]]
    twin.set_ylim(1.0, 1.1 * (speedups.max().max() if len(ideal) else 1.0))  # 1x = the unsplit model
    twin.set_ylabel("speed-up of the online path (x)")
    lines, labels = axis.get_legend_handles_labels()
    more_lines, more_labels = twin.get_legend_handles_labels()
    axis.legend(lines + more_lines, labels + more_labels, fontsize=7, loc="upper left")
    figure.tight_layout()
    save_figure_atomically(figure, out_dir / "accuracy.png")
    plt.close(figure)
    plot_training_curves(records, out_dir)


def start_kind(record: dict, teachers: list) -> str:
    """What a student started from: "teacher" (a teacher run of the table, or a shipped teacher's model folder),
    "pre-trained" (the teacher's own start), else "continued" (a student's continuation, more training)."""
    if record["init"] in {teacher["run"] for teacher in teachers} or Path(record["init"]).parts[-2:] == ("teacher", "model"):
        return "teacher"
    return "pre-trained" if record["init"] in {teacher["init"] for teacher in teachers} else "continued"


def figure_students(frame):
    """The runs of the separation-layer figure, each with its start (start_kind): students trained from the teacher
    or from its pre-trained start (a continuation of a student, which has had more training, is in the table only)."""
    teachers = frame[frame["layer"] == TEACHER_LAYER].to_dict("records")
    students = frame[frame["layer"] > TEACHER_LAYER].copy()
    students["start"] = [start_kind(record, teachers) for record in students.to_dict("records")]
    return students[students["start"] != "continued"]


def plot_training_curves(records: list, out_dir: Path, smoothing: int = 10) -> None:
    """training.png: each run's training CE against the step (rolling mean of `smoothing` logged steps)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    figure, axis = plt.subplots(figsize=(7, 4))
    for record in sorted(records, key=table_order):
        curve = pd.DataFrame(record["train_ce_curve"], columns=["step", "ce"])
        axis.plot(curve["step"], curve["ce"].rolling(smoothing, min_periods=1).mean(), label=record["run"],
                  linestyle="-" if record["layer"] == TEACHER_LAYER else "--" if record["alpha"] else ":")
    axis.set_xlabel("training step")
    axis.set_ylabel(f"training CE (rolling mean of {smoothing} logged steps)")
    axis.set_title("start/end cross-entropy on the shared training questions")
    axis.legend(fontsize=7)
    figure.tight_layout()
    save_figure_atomically(figure, out_dir / "training.png")
    plt.close(figure)


def main(argv=None) -> None:
    def accuracy_main(args_list):
        parser = argparse.ArgumentParser(prog="python -m deformer_bench.cli.accuracy", description=__doc__.split("\n\n")[0])
        parser.add_argument("--runs-dir", type=Path, help="the queue's runs (train_config.json, eval.json, ...)")
        parser.add_argument("--records", type=Path,
                            help="an accuracy.json written earlier: rebuild the table from it (the runs may be gone), "
                                 "e.g. to join a new --bench; with --runs-dir, the runs' records are added to it (a "
                                 "run of the same name replaces its saved record)")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--bench", type=Path, default=None,
                            help="a deformer-bench results directory of the runs' model shape and lengths")
        args = parser.parse_args(args_list)
        if args.runs_dir is None and args.records is None:
            raise ConfigError("no records to tabulate", "give --runs-dir (a queue's runs), --records (an accuracy.json), "
                                                        "or both")
        # the files written into --out, against everything read (a table rebuilt from --records goes elsewhere)
        check_distinct_paths({f"--out's {name}": args.out / name for name in OUTPUT_FILES},
                             {"the runs (--runs-dir)": args.runs_dir, "the records (--records)": args.records,
                              "the bench results (--bench)": args.bench})
        bench = load_bench(args.bench) if args.bench else None
        saved, saved_bench = saved_records(args.records, bench) if args.records else ([], None)
        records = collect(args.runs_dir, bench, saved) if args.runs_dir else saved
        # the speed-ups kept from --records keep their source (no new --bench), or the new bench's replace them
        write(records, args.out, bench_provenance(bench) if bench else saved_bench)
        print(f"wrote {args.out}/accuracy.json")

    sys.exit(run_cli(accuracy_main, argv))


if __name__ == "__main__":
    main()
