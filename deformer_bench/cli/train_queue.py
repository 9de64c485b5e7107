"""deformer-train's queue: a YAML file of runs (defaults, evaluation, records, runs), read and checked whole before
the first run starts, then planned: a run finished in the runs folder is skipped by train(), a run found in the
committed records (`records:`) is reported without training, the rest are trained and evaluated once.

    read_queue / queue_configs    the file, refused on any unknown key; [(name, TrainConfig, evaluation)]
    check_queue_inputs            every file and model every run reads, before the first run starts
    plan_queue                    which runs to train, which are recorded (records hold no weights)
    run_queue                     train and evaluate the plan, printing each run's scores
"""

import dataclasses
import json
import math
import re
import sys
from pathlib import Path

from ..contracts.errors import ConfigError, DeformerBenchError
from ..contracts.readers import FormatError, read_json
from ..environment import describe_environment, git_commit
from ..files import write_text_atomically
from ..squad.data import load_squad
from ..squad.metric import warn_to_stderr
from ..yaml_reader import read_yaml

QUEUE_KEYS = {"name", "init", "teacher"}  # per-run keys that are not TrainConfig fields
QUEUE_SECTIONS = {"defaults", "evaluation", "records", "runs"}
QUEUE_MADE = {"output_dir", "init_dir", "teacher_dir"}  # TrainConfig fields the queue fills in itself
EVALUATION_KEYS = {"dataset", "limit"}


def config_class():
    from ..train import TrainConfig  # deferred: torch

    return TrainConfig


def make_config(settings: dict):
    TrainConfig = config_class()
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
    if records is not None and (not isinstance(records, str) or not records or not Path(records).is_dir()):
        raise ConfigError(f"queue {queue_path}: records must be the folder of committed run records (RECORDS/NAME/"
                          f"train_config.json and eval.json), found {records!r}",
                          f"relative paths start where you run the command (here {Path.cwd()}): run it from the "
                          "repository's root, or fix the path")
    for index, run in enumerate(queue["runs"], start=1):
        if not isinstance(run, dict):
            raise _queue_error(queue_path, f"run {index} must be a mapping such as {{name: k3, layer: 3}}, "
                                           f"found {run!r}")
    return queue


def check_run_name(queue_path: Path, name) -> None:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise _queue_error(queue_path, f"run name {name!r} must be a plain folder name (no '/')")


def queue_configs(queue_path: Path, runs_dir: Path, queue: dict = None) -> list:
    """[(name, TrainConfig, eval settings)] in queue order; `init`/`teacher` may name earlier runs. `queue`: the
    file as read_queue read it already (read once: the runs and the records folder from one version of the file)."""
    from ..model import default_model_dir  # deferred: torch

    queue = read_queue(queue_path) if queue is None else queue
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
    from ..training_checks import DONE_FILE, check_run_directory

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
        if not (Path(config.output_dir) / DONE_FILE).exists():
            check_run_directory(config, {"the queue file": queue_path,
                                         "the evaluation dataset": evaluation.get("dataset")})
        layers_of[str(runs_dir / name / "model")] = layers_of[config.init_dir]


def evaluation_differences(record: dict, evaluation: dict, doc_stride: int, by_name: bool = False) -> list:
    """The parts of the queue's evaluation (dataset, limit, stride) an eval.json record did not score; the dataset
    compared by path, or by file name (`by_name`: records made on another machine). TypeError for a record whose
    scores are not numbers, KeyError for one that lacks them."""
    scores = (record["f1"], record["exact_match"], record["questions"])
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
               for value in scores):
        raise TypeError(f"its scores (f1, exact_match, questions) are not all numbers: {scores!r}")
    dataset, wanted = str(record["dataset"]), str(evaluation.get("dataset"))
    same_dataset = Path(dataset).name == Path(wanted).name if by_name else dataset == wanted
    return [part for part, same in (("evaluation dataset", same_dataset),
                                    ("evaluation limit", record.get("limit", 0) == evaluation.get("limit", 0)),
                                    ("doc_stride", record["doc_stride"] == doc_stride)) if not same]


def read_evaluation(path: Path, evaluation: dict, doc_stride: int):
    """The run's eval.json if it scored this evaluation (dataset, limit, stride); None to evaluate (again)."""
    if not path.exists():
        return None
    try:
        record = read_json(path, "evaluation record")
        differing = evaluation_differences(record, evaluation, doc_stride)
    except (FormatError, KeyError, TypeError) as error:
        print(f"note: {path} cannot be read ({error}); evaluating again", file=sys.stderr)
        return None
    if differing:
        print(f"note: {path} scored another evaluation ({', '.join(differing)} differ); evaluating again",
              file=sys.stderr)
        return None
    return record


def model_reference(path, runs_dir: Path) -> str:
    """What a run's init or teacher model is, in words that survive another checkout, venv or --runs-dir: the
    default model package, a run's model in the runs folder, or the path as the queue gave it."""
    from ..model import DEFAULT_MODEL_PACKAGE  # deferred: torch

    if not path:
        return "none"
    path = Path(path)
    if path.parts[-2:] == (DEFAULT_MODEL_PACKAGE, "model") and path.parts[-3] in ("site-packages", "dist-packages"):
        return "the default model"  # in any venv
    if path.name == "model" and path.parent.parent == Path(runs_dir):
        return f"run {path.parent.name}"
    return str(path)


def recorded_run(records_dir: Path, name: str, config, evaluation: dict, runs_dir: Path,
                 fingerprints: dict):
    """(eval record, None) if RECORDS/NAME holds this run, trained with these settings and models and scored on
    this evaluation; (None, why not) if it holds another; (None, None) if it holds nothing. Paths are compared as
    machines differ: models by model_reference, the training and evaluation files by name. A record that cannot
    be read is refused: trained again silently, it would cost hours; left alone, it would hide the run."""
    from ..training_checks import differing_settings  # deferred: torch

    folder = records_dir / name
    if not folder.exists() and not folder.is_symlink():
        return None, None
    try:
        train_record = read_json(folder / "train_config.json", "training record")
        saved = train_record["config"]
        scored = read_json(folder / "eval.json", "evaluation record")
        if not isinstance(saved, dict) or not isinstance(scored, dict):
            raise TypeError("train_config.json's 'config' and eval.json must be mappings")
        differing = differing_settings(saved, config)
        if Path(saved["train_file"]).name != Path(config.train_file).name:
            differing.append("train_file")
        recorded_runs_dir = Path(saved["output_dir"]).parent
        differing += [key for key in ("init_dir", "teacher_dir") if model_reference(saved.get(key), recorded_runs_dir)
                      != model_reference(getattr(config, key), runs_dir)]
        differing += evaluation_differences(scored, evaluation, config.doc_stride, by_name=True)
        recorded_weights = recorded_fingerprints(train_record)
    except (FormatError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise ConfigError(f"the record of run {name!r} in {folder} cannot be read ({type(error).__name__}: {error})",
                          f"restore it from git, or move {folder} away to train the run again") from None
    if not differing:  # the weights last: loading models is the costly part
        differing = weight_differences(recorded_weights, config, fingerprints, f"the record of run {name!r}")
    if differing:
        return None, f"is of other settings ({', '.join(differing)} differ)"
    return scored, None


def recorded_fingerprints(train_record: dict) -> dict:
    """{"init"/"teacher": sha256} a record names (records since train.model_record; older ones name none and are
    compared by path only). ValueError for a malformed one: compared as it is, it would retrain the run (hours)."""
    named = {}
    for what in ("init", "teacher"):
        key = f"{what}_fingerprint_sha256"
        if key not in train_record or (what == "teacher" and train_record[key] is None):  # no teacher distilled
            continue
        value = train_record[key]
        if not isinstance(value, str) or not re.fullmatch("[0-9a-f]{64}", value):
            raise ValueError(f"{key} is {value!r}, not a sha256 in hex")
        named[what] = value
    return named


def weight_differences(recorded: dict, config, fingerprints: dict, record_name: str) -> list:
    """The "init weights" / "teacher weights" when the model at the run's init or teacher path now is not the one
    the record trained from (`recorded`: recorded_fingerprints): a teacher retrained into the same folder makes its
    students' records stale. A model not here is not compared (a queue run's model: plan_queue's rule on sources
    covers it). `fingerprints`: path -> sha256, filled as models are read, for one plan."""
    from ..model import load_qa_model, weights_fingerprint  # deferred: torch

    differing = []
    for what, path in (("init", config.init_dir), ("teacher", config.teacher_dir)):
        if what not in recorded or not path or not (Path(path) / "config.json").is_file():
            continue
        if path not in fingerprints:
            try:
                fingerprints[path] = weights_fingerprint(load_qa_model(Path(path))[0])
            except DeformerBenchError as error:
                raise ConfigError(f"{record_name} names the {what} weights it trained from, and the {what} model "
                                  f"{path} they are checked against cannot be read: {error.message}",
                                  error.hint) from None
        if fingerprints[path] != recorded[what]:
            differing.append(f"{what} weights")
    return differing


def plan_queue(configs: list, selected, runs_dir: Path, records_dir) -> list:
    """[(name, config, evaluation, recorded eval or None)] for the selected runs, in queue order; a run with a
    recorded eval is not trained. A record counts when it matches (recorded_run), the run is not finished in
    runs-dir (train() skips those itself), and the runs it starts from or distils (init/teacher: NAME) are
    finished or counted too: a run trained anew would make its record stale. Records hold no weights, so a
    recorded run is trained again when a later run to train starts from its model; a run to train whose model
    comes from a run that is neither finished nor to be trained (left out by --only) is refused."""
    from ..training_checks import DONE_FILE  # deferred: torch

    run_of_model = {str(runs_dir / name / "model"): name for name, _, _ in configs}
    done = {name for name, config, _ in configs if (Path(config.output_dir) / DONE_FILE).exists()}
    chosen = [entry for entry in configs if not selected or entry[0] in selected]
    recorded, notes, fingerprints = {}, [], {}  # fingerprints: path -> sha256, models read once per plan
    for name, config, evaluation in configs:  # queue order: a run's sources are decided before it
        if records_dir is None or name in done:
            continue
        record, why_not = recorded_run(Path(records_dir), name, config, evaluation, runs_dir, fingerprints)
        sources = [run_of_model[model] for model in (config.init_dir, config.teacher_dir) if model in run_of_model]
        retrained = [source for source in sources if source not in recorded and source not in done]
        if record is not None and retrained:
            record, why_not = None, f"starts from run {retrained[0]}, which is not recorded or finished"
        if why_not and (not selected or name in selected):
            notes.append(f"note: {Path(records_dir) / name} {why_not}; training {name}")
        if record is not None:
            recorded[name] = record
    plan, needed = [], set()  # last run first: whether a recorded run's model is needed depends on later runs
    for name, config, evaluation in reversed(chosen):
        record = recorded.get(name)
        if record is not None and str(runs_dir / name / "model") in needed:
            notes.append(f"note: {name} is recorded in {records_dir}, but a later run starts from its model, which a "
                         f"record does not hold; training {name} again")
            record = None
        if record is None and name not in done:
            needed |= {config.init_dir, config.teacher_dir}
        plan.append((name, config, evaluation, record))
    to_train = {name for name, _, _, record in plan if record is None}
    missing = sorted({run_of_model[model] for model in needed if model in run_of_model} - done - to_train)
    if missing:
        raise ConfigError(f"runs to train start from the model of run(s) {', '.join(missing)}, which are neither "
                          f"finished in {runs_dir} nor selected", f"add them to --only: --only "
                          f"{','.join([*missing, *(name for name, *_ in plan[::-1] if name in to_train)])}")
    for note in notes:
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


def run_queue(queue_path: Path, runs_dir: Path, only, command: list, progress: bool) -> None:
    """Check the whole queue, plan it (plan_queue), then train and evaluate each run to do in order."""
    # Training and evaluation code imported now, both, so that the commit looked at next is the code that runs,
    # whatever lands during the queue's hours of work.
    from ..evaluate import evaluate_model  # noqa: F401  # deferred: torch
    from ..train import train  # deferred: torch

    git_commit()  # the code this queue runs, looked at now: commits may land during its hours of work
    queue = read_queue(queue_path)
    configs = queue_configs(queue_path, runs_dir, queue)
    selected = {name.strip() for name in only.split(",") if name.strip()} if only is not None else None
    if selected is not None and not selected:
        raise ConfigError("--only is empty", f"name runs of {queue_path}, e.g. --only {configs[0][0]}")
    unknown = sorted(selected - {name for name, _, _ in configs}) if selected else []
    if unknown:
        raise ConfigError(f"--only names runs not in {queue_path}: {', '.join(unknown)}",
                          f"runs there: {', '.join(name for name, _, _ in configs)}")
    check_queue_inputs(configs, runs_dir, queue_path)
    records_dir = queue.get("records")
    for name, config, evaluation, recorded in plan_queue(configs, selected, runs_dir, records_dir):
        if recorded is not None:
            print(f"{name}: F1 {recorded['f1']:.2f}, EM {recorded['exact_match']:.2f} on {recorded['questions']} "
                  f"questions (recorded in {Path(records_dir) / name}; not trained again)")
            continue
        train(config, command, progress=progress)
        if evaluation.get("dataset"):
            scores = evaluate_run(name, config, evaluation, command, progress=progress)
            print(f"{name}: F1 {scores['f1']:.2f}, EM {scores['exact_match']:.2f} on {scores['questions']} questions")
