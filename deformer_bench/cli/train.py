"""deformer-train: one training run, or a resumable queue of runs (teacher first, then students)."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..contracts.errors import ConfigError, DeformerBenchError
from ..contracts.readers import FormatError, read_json
from ..environment import describe_environment
from ..files import write_text_atomically
from ..squad.data import load_squad
from ..squad.metric import warn_to_stderr
from ..yaml_reader import read_yaml
from .common import ArgumentParser, run_cli

QUEUE_KEYS = {"name", "init", "teacher"}  # per-run keys that are not TrainConfig fields
QUEUE_SECTIONS = {"defaults", "evaluation", "records", "runs"}
QUEUE_MADE = {"output_dir", "init_dir", "teacher_dir"}  # TrainConfig fields the queue fills in itself
EVALUATION_KEYS = {"dataset", "limit"}
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
    for field in dataclasses.fields(_config_class()):
        if field.name in ("output_dir", "init_dir", "train_file", "teacher_dir"):
            continue
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=_boolean if field.type is bool else field.type,
                            default=None)
    parser.add_argument("--quiet", action="store_true")
    return parser


def _config_class():
    from ..train import TrainConfig  # deferred: torch

    return TrainConfig


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def make_config(settings: dict):
    TrainConfig = _config_class()
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown training settings: {', '.join(unknown)}", f"known: {', '.join(sorted(known))}")
    required = [field.name for field in dataclasses.fields(TrainConfig)
                if field.default is dataclasses.MISSING and field.name not in settings]
    if required:
        raise ConfigError(f"missing training settings: {', '.join(required)}",
                          "give them (for a queue: in its defaults or in the run)")
    try:
        return TrainConfig(**settings)
    except TypeError as error:
        raise ConfigError(f"bad training settings: {error}", "see deformer-train --help") from None


def _queue_error(queue_path: Path, what: str) -> ConfigError:
    return ConfigError(f"queue {queue_path}: {what}", "see experiments/minilm-squad.yaml for the format")


def read_queue(queue_path: Path) -> dict:
    """The queue file as a mapping with known sections of the right types; anything else is refused."""
    queue = read_yaml(queue_path, "queue", ConfigError, "give a YAML queue file")
    if not isinstance(queue, dict) or not isinstance(queue.get("runs"), list) or not queue["runs"]:
        raise _queue_error(queue_path, "needs a non-empty 'runs' list")
    unknown = sorted(set(queue) - QUEUE_SECTIONS, key=str)
    if unknown:  # a typo such as 'defualts:' would otherwise drop every default silently
        raise _queue_error(queue_path, f"unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                                       f"known: {', '.join(sorted(QUEUE_SECTIONS))}")
    for section in ("defaults", "evaluation"):
        if queue.get(section) is not None and not isinstance(queue[section], dict):
            raise _queue_error(queue_path, f"'{section}' must be a mapping of settings, "
                                           f"found {type(queue[section]).__name__}")
    evaluation = queue.get("evaluation") or {}
    unknown = sorted(set(evaluation) - EVALUATION_KEYS, key=str)
    if unknown:
        raise _queue_error(queue_path, f"unknown evaluation key(s) {', '.join(map(repr, unknown))}; "
                                       f"known: {', '.join(sorted(EVALUATION_KEYS))}")
    limit = evaluation.get("limit", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise _queue_error(queue_path, f"evaluation limit must be a whole number >= 0 (0 = all), found {limit!r}")
    if "dataset" in evaluation and not isinstance(evaluation["dataset"], str):
        raise _queue_error(queue_path, "evaluation dataset must be a path")
    records = queue.get("records")
    if records is not None and (not isinstance(records, str) or not Path(records).is_dir()):
        raise _queue_error(queue_path, f"records must be the folder of committed run records (RECORDS/NAME/"
                                       f"train_config.json and eval.json), found {records!r}")
    for index, run in enumerate(queue["runs"], start=1):
        if not isinstance(run, dict):
            raise _queue_error(queue_path, f"run {index} must be a mapping such as {{name: k3, layer: 3}}, "
                                           f"found {run!r}")
    return queue


def check_run_name(queue_path: Path, name) -> None:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise _queue_error(queue_path, f"run name {name!r} must be a plain folder name (no '/')")


def queue_configs(queue_path: Path, runs_dir: Path) -> list:
    """[(name, TrainConfig, eval settings)] in queue order; `init`/`teacher` may name earlier runs."""
    from ..model import default_model_dir  # deferred: torch

    queue = read_queue(queue_path)
    defaults = dict(queue.get("defaults") or {})
    evaluation = dict(queue.get("evaluation") or {})
    configs, names = [], set()
    for run in queue["runs"]:
        name = run.get("name")
        check_run_name(queue_path, name)
        if name in names:
            raise _queue_error(queue_path, f"run name {name!r} is used twice")
        names.add(name)

        def model_of(reference):
            if reference in (None, "default"):
                return str(default_model_dir())
            return str(runs_dir / reference / "model") if reference in names else str(reference)

        odd = sorted((key for key in (*run, *defaults) if not isinstance(key, str)), key=str)
        if odd:  # YAML reads `on:` as True and `3:` as 3
            raise _queue_error(queue_path, f"setting names must be text, found {', '.join(map(repr, odd))}")
        set_by_queue = sorted((set(run) | set(defaults)) & QUEUE_MADE)
        if set_by_queue:
            raise _queue_error(queue_path, f"{', '.join(set_by_queue)} are set by the queue (runs-dir/NAME, init:, "
                                           "teacher:), not in a run or the defaults")
        settings = {**defaults, **{k: v for k, v in run.items() if k not in QUEUE_KEYS}}
        settings["init_dir"] = model_of(run.get("init"))
        if run.get("teacher"):
            settings["teacher_dir"] = model_of(run["teacher"])
        settings["output_dir"] = str(runs_dir / name)
        configs.append((name, make_config(settings), evaluation))
    return configs


def check_queue_inputs(configs: list, runs_dir: Path, queue_path: Path = None) -> None:
    """Before the first run starts (each takes an hour or more): every file and model a run reads must be
    there, or be made by an earlier run of the queue; every run's k must fit its model, and its directory
    must be one it may write."""
    from ..model import load_hf_config  # deferred: torch
    from ..training_checks import check_run_directory

    layers_of = {}  # model directory -> its number of layers (a run's model has its init's)
    datasets_read = set()
    for name, config, evaluation in configs:
        for path, what in ((config.train_file, "train_file"), (evaluation.get("dataset"), "evaluation dataset")):
            if path is not None and not Path(path).is_file():
                raise DeformerBenchError(f"run {name!r}: {what} {path} is not a file",
                                         "fix the path in the queue (relative paths start where you run the command)")
            if path is not None and Path(path).resolve() not in datasets_read:
                # read whole now: a damaged evaluation set was found only after its run had trained (hours)
                load_squad(path)
                datasets_read.add(Path(path).resolve())
        for path, what in ((config.init_dir, "init"), (config.teacher_dir or None, "teacher")):
            if path is not None and path not in layers_of:
                if not Path(path, "config.json").is_file():
                    raise DeformerBenchError(f"run {name!r}: {what} model {path} is not a model directory",
                                             "name an earlier run of the queue, or a model directory with config.json")
                layers_of[path] = load_hf_config(Path(path)).num_hidden_layers
        if config.layer > layers_of[config.init_dir]:
            raise ConfigError(f"run {name!r}: k={config.layer} is outside 0..{layers_of[config.init_dir]} for its "
                               f"{layers_of[config.init_dir]}-layer model", "fix its layer")
        if not (Path(config.output_dir) / "DONE").exists():
            check_run_directory(config, {"the queue file": queue_path,
                                         "the evaluation dataset": evaluation.get("dataset")})
        layers_of[str(runs_dir / name / "model")] = layers_of[config.init_dir]


def scored_this_evaluation(record: dict, evaluation: dict, doc_stride: int) -> bool:
    """Whether an eval.json record scored the queue's evaluation (dataset, limit, stride) and holds its scores;
    KeyError or TypeError for a record of another shape."""
    float(record["f1"]), float(record["exact_match"]), int(record["questions"])
    return (record["dataset"] == str(evaluation["dataset"]) and record.get("limit", 0) == evaluation.get("limit", 0)
            and record["doc_stride"] == doc_stride)


def read_evaluation(path: Path, evaluation: dict, doc_stride: int):
    """The run's eval.json if it scored this evaluation (dataset, limit, stride); None to evaluate (again)."""
    if not path.exists():
        return None
    try:
        record = read_json(path, "evaluation record")
        same = scored_this_evaluation(record, evaluation, doc_stride)
    except (FormatError, KeyError, TypeError, ValueError) as error:
        print(f"note: {path} cannot be read ({error}); evaluating again", file=sys.stderr)
        return None
    if not same:
        print(f"note: {path} scored another evaluation (dataset, limit or stride); evaluating again", file=sys.stderr)
        return None
    return record


def model_reference(path, runs_dir: Path) -> str:
    """What a run's init or teacher model is, in words that survive another checkout, venv or --runs-dir: the
    default model package, an earlier run of the queue, or the path as the queue gave it."""
    from ..model import default_model_dir  # deferred: torch

    if not path:
        return "none"
    path, default = Path(path), default_model_dir()
    if path == default or path.parts[-2:] == default.parts[-2:]:  # the package's model folder in any venv
        return "the default model"
    if path.name == "model" and path.parent.parent == Path(runs_dir):
        return f"run {path.parent.name}"
    return str(path)


def recorded_run(records_dir: Path, name: str, config, evaluation: dict, runs_dir: Path):
    """(eval record, None) if RECORDS/NAME holds this run, trained with these settings and models and scored on
    this evaluation; (None, why not) if it holds another; (None, None) if it holds nothing. A record that cannot
    be read is refused: trained again silently, it would cost hours; left alone, it would hide the run."""
    from ..training_checks import differing_settings  # deferred: torch

    folder = records_dir / name
    if not folder.exists():
        return None, None
    try:
        saved = read_json(folder / "train_config.json", "training record")["config"]
        scored = read_json(folder / "eval.json", "evaluation record")
        if not isinstance(saved, dict) or not isinstance(scored, dict):
            raise TypeError("train_config.json's 'config' and eval.json must be mappings")
        differing = differing_settings(saved, config)
        recorded_runs_dir = Path(saved["output_dir"]).parent
        differing += [key for key in ("init_dir", "teacher_dir") if model_reference(saved.get(key), recorded_runs_dir)
                      != model_reference(getattr(config, key), runs_dir)]
        if not evaluation.get("dataset") or not scored_this_evaluation(scored, evaluation, config.doc_stride):
            differing.append("evaluation")
    except (FormatError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"the record of run {name!r} in {folder} cannot be read ({type(error).__name__}: {error})",
                          f"restore it from git, or move {folder} away to train the run again") from None
    if differing:
        return None, f"is of other settings ({', '.join(differing)} differ)"
    return scored, None


def plan_queue(configs: list, selected, runs_dir: Path, records_dir) -> list:
    """[(name, config, evaluation, recorded eval or None)] for the runs to do, in queue order. A run whose folder
    in runs-dir is not finished (no DONE) but whose committed record matches is not trained again, unless a later
    run to train starts from (or distils) its model: records hold no weights."""
    plan, needed, notes = [], set(), []  # planned last run first: whether a run is needed depends on later ones
    for name, config, evaluation in reversed([entry for entry in configs if not selected or entry[0] in selected]):
        recorded = None
        if records_dir is not None and not (Path(config.output_dir) / "DONE").exists():
            recorded, why_not = recorded_run(Path(records_dir), name, config, evaluation, runs_dir)
            if why_not:
                notes.append(f"note: {Path(records_dir) / name} {why_not}; training {name}")
            if recorded is not None and str(runs_dir / name / "model") in needed:
                notes.append(f"note: {name} is recorded in {records_dir}, but a later run starts from its model, "
                             f"which a record does not hold; training {name} again")
                recorded = None
        if recorded is None:
            needed |= {config.init_dir, config.teacher_dir}
        plan.append((name, config, evaluation, recorded))
    for note in reversed(notes):
        print(note, file=sys.stderr)
    return plan[::-1]


def evaluate_run(name: str, config, evaluation: dict, command: list, progress: bool) -> dict:
    from ..evaluate import evaluate_model  # deferred: torch

    output = Path(config.output_dir)
    result_path = output / "eval.json"
    kept = read_evaluation(result_path, evaluation, config.doc_stride)
    if kept is not None:
        return kept
    environment = describe_environment(command)  # before the work: the commit the figures came from
    result = evaluate_model(output / "model", evaluation["dataset"], limit=evaluation.get("limit") or None,
                            doc_stride=config.doc_stride, progress=progress, warn=warn_to_stderr, device=config.device)
    record = {"name": name, **result.scores, "questions": result.questions, "windows": result.windows,
              "backend": result.backend, "dataset": str(evaluation["dataset"]), "limit": evaluation.get("limit", 0),
              "doc_stride": config.doc_stride,
              "layer": config.layer,
              "gamma": config.gamma, "alpha": config.alpha, "beta": config.beta,
              "model_fingerprint_sha256": result.model_fingerprint_sha256, "environment": environment}
    write_text_atomically(result_path, json.dumps(record, indent=2) + "\n")
    return record


def train_main(argv=None) -> int:
    from ..model import default_model_dir  # deferred: torch
    from ..train import train

    args = build_parser().parse_args(argv)
    command = ["deformer-train", *(argv if argv is not None else sys.argv[1:])]
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(_config_class())
                 if getattr(args, field.name, None) is not None}
    if args.queue:
        given = [f"--{name.replace('_', '-')}" for name in (*SINGLE_RUN_OPTIONS, *overrides)
                 if getattr(args, name, None) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} set a single run; a queue takes each run's settings from its file",
                              "put them in the queue (its defaults or a run), or drop --queue")
        runs_dir = args.runs_dir or Path("runs")
        configs = queue_configs(args.queue, runs_dir)
        selected = {name.strip() for name in args.only.split(",") if name.strip()} if args.only is not None else None
        if selected is not None and not selected:
            raise ConfigError("--only is empty", f"name runs of {args.queue}, e.g. --only {configs[0][0]}")
        unknown = sorted(selected - {name for name, _, _ in configs}) if selected else []
        if unknown:
            raise ConfigError(f"--only names runs not in {args.queue}: {', '.join(unknown)}",
                              f"runs there: {', '.join(name for name, _, _ in configs)}")
        check_queue_inputs(configs, runs_dir, args.queue)
        records_dir = read_queue(args.queue).get("records")
        for name, config, evaluation, recorded in plan_queue(configs, selected, runs_dir, records_dir):
            if recorded is not None:
                print(f"{name}: F1 {recorded['f1']:.2f}, EM {recorded['exact_match']:.2f} on {recorded['questions']} "
                      f"questions (recorded in {Path(records_dir) / name}; not trained again)")
                continue
            train(config, command, progress=not args.quiet)
            if evaluation.get("dataset"):
                scores = evaluate_run(name, config, evaluation, command, progress=not args.quiet)
                print(f"{name}: F1 {scores['f1']:.2f}, EM {scores['exact_match']:.2f} on {scores['questions']} questions")
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
