"""Fine-tune the unsplit teacher, and distil DeFormer students from it: loss = γ·CE + α·KD + β·LRS.

    CE   cross-entropy of the gold start/end positions (mean of the two)
    KD   T² · KL(teacher ‖ student) of the start/end distributions at temperature T (mean of the two)
    LRS  mean squared distance between the student's upper-layer outputs (layers k..L-1) and the
         teacher's outputs of the same layers, over real (unpadded) tokens

The teacher is a DeFormer at k=0 with passage positions after the padded question: exactly the unsplit
model on `[question; passage]`, in the coordinates the students use. Training is resumable: a checkpoint
(weights, optimizer, scheduler, step) is written atomically every `checkpoint_every` steps, and a run
refuses a checkpoint written for another configuration.
"""

import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .contracts.bounds import MAX_BATCH_SIZE
from .contracts.errors import ConfigError, DeformerBenchError, RuntimeFailure, first_line
from .contracts.readers import read_json, read_json_lines
from .environment import describe_environment
from .files import clean_stale_staging, staged_directory, write_text_atomically
from .model import Deformer, DeformerConfig, load_qa_model, weights_fingerprint
from .squad.data import load_squad
from .squad.features import check_doc_stride, featurize
from .tokenizer import load_tokenizer
from .training_checks import (DONE_FILE, MODEL_DIR, check_finished_run, check_room_to_train, check_run_directory,
                              ensure_room, saving, warn_if_bf16_is_slow)

CHECKPOINT_DIR = "checkpoint"



class CheckpointError(DeformerBenchError):
    """A checkpoint that belongs to another model, k or training configuration."""


class TrainingDiverged(RuntimeFailure):
    """The loss became NaN or infinite."""


MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1000


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str
    init_dir: str  # where the weights start: the base encoder (teacher) or the teacher (students)
    train_file: str
    layer: int = 0  # 0 = the unsplit teacher
    # Students only; the teacher is always "question_len". A student starts from the teacher, whose
    # upper layers and QA head learned passage positions after the padded question: split at k=4 with
    # no training, that teacher scores F1 20.1 with "question_len" and 5.6 with "zero" (300 dev questions,
    # results/split-teacher/), so students keep the teacher's coordinates.
    passage_position_offset: str = "question_len"
    teacher_dir: str = ""  # needed when alpha or beta > 0
    gamma: float = 0.7
    alpha: float = 1.1
    beta: float = 0.5
    temperature: float = 2.0
    question_len: int = 32
    passage_len: int = 224
    doc_stride: int = 128
    max_examples: int = 0  # 0 = all
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    bf16: bool = True
    # Attention-probability dropout cost 40% of the forward pass on CPU (bernoulli over [B, heads, S, S])
    # and keeps SDPA off its fused kernel; hidden dropout (0.1) stays.
    attention_dropout: float = 0.0
    checkpoint_every: int = 100
    # Where the steps run: "cpu", or "cuda" (a GPU; bf16 autocast there is the fast setting). Not part of a
    # run's identity: a run checkpointed on one device resumes on the other.
    device: str = "cpu"

    def __post_init__(self):
        numbers = ("gamma", "alpha", "beta", "temperature", "epochs", "learning_rate", "warmup_ratio", "weight_decay",
                   "attention_dropout")
        for name in numbers:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"training setting {name} must be a finite number, got {value!r}", f"fix {name}")
        for name in ("layer", "question_len", "passage_len", "doc_stride", "max_examples", "batch_size", "seed",
                     "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"training setting {name} must be a whole number >= 0, got {value!r}", f"fix {name}")
        # torch.manual_seed takes at most 64 bits (a larger seed was a ValueError deep in the run); a thousand
        # epochs are past any schedule this project trains, and a typo such as 1e9 would train until killed
        if self.seed > MAX_SEED or self.epochs > MAX_EPOCHS:
            raise ConfigError(f"training settings seed (at most {MAX_SEED:,}) and epochs (at most {MAX_EPOCHS:,}) are "
                              f"out of range: seed {self.seed:,}, epochs {self.epochs:g}", "fix them")
        if not isinstance(self.bf16, bool):
            raise ConfigError(f"training setting bf16 must be true or false, got {self.bf16!r}", "fix bf16")
        if self.checkpoint_every < 1 or not 0 <= self.warmup_ratio <= 1 or not 0 <= self.attention_dropout < 1:
            raise ConfigError("checkpoint_every must be >= 1, warmup_ratio in [0, 1], attention_dropout in [0, 1)",
                              "fix them")
        if min(self.gamma, self.alpha, self.beta) < 0 or self.gamma + self.alpha + self.beta == 0:
            raise ConfigError("loss weights must be >= 0 and not all 0", "e.g. --gamma 0.7 --alpha 1.1 --beta 0.5")
        if (self.alpha > 0 or self.beta > 0) and not self.teacher_dir:
            raise ConfigError("KD and LRS need a teacher", "give --teacher DIR, or set --alpha 0 --beta 0")
        if self.layer == 0 and (self.alpha > 0 or self.beta > 0):
            raise ConfigError("k=0 is the teacher itself: nothing to distil", "train it with --alpha 0 --beta 0")
        if self.teacher_dir and self.alpha == 0 and self.beta == 0:
            raise ConfigError("a teacher was given but KD and LRS are off (alpha = beta = 0): it would not be used",
                              "drop --teacher, or give --alpha/--beta above 0")
        if self.layer == 0 and self.passage_position_offset != "question_len":
            raise ConfigError(f"the teacher (k=0) always places passages after the padded question; "
                              f"passage_position_offset {self.passage_position_offset!r} would not be used",
                              "drop it for the teacher (it applies to students)")
        if self.temperature <= 0 or self.epochs <= 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("temperature, epochs, batch size and learning rate must be positive", "fix them")
        if self.batch_size > MAX_BATCH_SIZE:  # a typo such as 1e11 was taken: a batch of the whole set, out of memory
            raise ConfigError(f"training setting batch_size must be at most {MAX_BATCH_SIZE:,} examples, got "
                              f"{self.batch_size:,}", "fix batch_size")
        if self.device not in DEVICES:
            raise ConfigError(f"training device {self.device!r} is unknown", f"use one of: {', '.join(DEVICES)}")
        check_doc_stride(self.passage_len, self.doc_stride)
        self.deformer_config()  # an unknown offset or bad lengths are refused here, before any run starts

    @property
    def is_teacher(self) -> bool:
        return self.layer == 0

    def deformer_config(self) -> DeformerConfig:
        offset = "question_len" if self.is_teacher else self.passage_position_offset
        return DeformerConfig(self.layer, self.question_len, self.passage_len, offset)


def distillation_losses(config: TrainConfig, batch: dict, student_logits, student_upper, teacher_logits,
                        teacher_layers) -> dict:
    """The three loss terms (unweighted) for one batch."""
    mask = torch.cat([batch["question_attention_mask"], batch["passage_attention_mask"]], dim=1).bool()  # [B, S]
    terms = {}
    ce = [F.cross_entropy(logits.float(), batch[name])
          for logits, name in zip(student_logits, ("start_positions", "end_positions"))]
    terms["ce"] = (ce[0] + ce[1]) / 2
    if config.alpha > 0:
        temperature = config.temperature
        kd = []
        for student, teacher in zip(student_logits, teacher_logits):
            student = student.float().masked_fill(~mask, -1e4) / temperature
            teacher = teacher.float().masked_fill(~mask, -1e4) / temperature
            kd.append(F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True,
                               reduction="batchmean") * temperature ** 2)
        terms["kd"] = (kd[0] + kd[1]) / 2
    if config.beta > 0 and not student_upper:  # k = L: no upper layers to match
        terms["lrs"] = torch.zeros(())
    elif config.beta > 0:
        weights = mask.unsqueeze(-1).float()  # [B, S, 1]
        per_layer = [(((s.float() - t.float()) ** 2) * weights).sum() / (weights.sum() * s.shape[-1])
                     for s, t in zip(student_upper, teacher_layers[config.layer:])]
        terms["lrs"] = sum(per_layer) / len(per_layer)
    return terms


DEVICES = ("cpu", "cuda")


def training_device(config: TrainConfig):
    """The torch.device of the run; a CUDA run on a machine without CUDA is refused before any work."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training device cuda asked for, but torch {torch.__version__} sees no CUDA device",
                          "train with --device cpu (device: cpu in a queue), or on a machine with a GPU")
    return torch.device(config.device)


def split_forward(deformer: Deformer, batch: dict, collect):
    question_hidden = deformer.lower_question(batch["question_input_ids"], batch["question_attention_mask"])
    passage_hidden = deformer.lower_passage(batch["passage_input_ids"], batch["passage_attention_mask"])
    return deformer.upper(question_hidden, batch["question_attention_mask"], passage_hidden,
                          batch["passage_attention_mask"], upper_hidden_states=collect)


def select_examples(examples, config: TrainConfig):
    if not config.max_examples or config.max_examples >= len(examples):
        return examples
    order = np.random.default_rng(config.seed).permutation(len(examples))[:config.max_examples]
    return [examples[i] for i in sorted(order)]


def save_checkpoint(directory: Path, student: Deformer, optimizer, scheduler, step: int, config: TrainConfig,
                    elapsed_s: float = 0.0):
    """Written beside the last checkpoint, which is replaced only once the new one is whole (a kill at any
    point leaves one complete checkpoint: files.staged_directory)."""
    state_bytes = 3 * sum(tensor.numel() * tensor.element_size() for tensor in student.qa_model.state_dict().values())
    ensure_room(directory.parent, state_bytes + 2**20, "checkpoint")  # weights and two AdamW moments
    with staged_directory(directory, replace=True) as staging, saving(directory.parent, "checkpoint"):
        torch.save({"model": student.qa_model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "config": dataclasses.asdict(config),
                    "torch_rng": torch.get_rng_state(), "elapsed_s": elapsed_s}, staging / "state.pt")


def load_checkpoint(directory: Path, config: TrainConfig):
    try:
        state = torch.load(directory / "state.pt", weights_only=False)
        saved = state["config"]
    except Exception as error:  # truncated or corrupt: torch raises RuntimeError, EOFError, UnpicklingError...
        raise CheckpointError(f"checkpoint {directory / 'state.pt'} cannot be read ({type(error).__name__}: "
                              f"{first_line(error)})",
                              f"remove {directory} to restart the run from its beginning") from None
    mine = dataclasses.asdict(config)
    differing = sorted(key for key in mine if key not in ("checkpoint_every", "device") and saved.get(key) != mine[key])
    if differing:
        raise CheckpointError(
            f"checkpoint in {directory} was written for another configuration ({', '.join(differing)} differ)",
            "resume with the same settings, or give a new --output directory")
    return state


def rewind_log(log_path: Path, step: int, checkpoint_elapsed_s) -> float:
    """Drop log lines past `step` (work the interruption lost, redone now); returns the elapsed seconds to
    continue from: the checkpoint's own figure, or the last kept line's for checkpoints that lack one."""
    entries = read_json_lines(log_path, "training log") if log_path.exists() else []
    kept = [entry for entry in entries if entry["step"] <= step]
    if len(kept) != len(entries):
        write_text_atomically(log_path, "".join(json.dumps(entry) + "\n" for entry in kept))
    if checkpoint_elapsed_s is not None:
        return checkpoint_elapsed_s
    return kept[-1]["elapsed_s"] if kept else 0.0


def model_record(qa_model, teacher) -> dict:
    """The student's shape (readers of the record need no saved model: cli.accuracy) and which weights the run
    started from and distilled from: sha256 as Deformer.fingerprint gives it, taken before any step or resume."""
    config = qa_model.config
    return {"model_shape": {"num_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
                            "intermediate_size": config.intermediate_size},
            "init_fingerprint_sha256": weights_fingerprint(qa_model),
            "teacher_fingerprint_sha256": teacher.fingerprint() if teacher is not None else None}


def check_same_start_models(record_path: Path, models: dict) -> None:
    """A resumed run must start from and distil from the weights its first start did: a teacher retrained into
    the same folder meanwhile would give a run of two teachers under one record (records before model_record name
    none: not compared)."""
    saved = read_json(record_path, "training record") if record_path.exists() else {}
    changed = [what for what in ("init", "teacher") if f"{what}_fingerprint_sha256" in saved
               and saved[f"{what}_fingerprint_sha256"] != models[f"{what}_fingerprint_sha256"]]
    if changed:
        raise CheckpointError(f"the {' and '.join(changed)} model of {record_path.parent} holds other weights than "
                              f"when the run started ({record_path.name} names the first ones)",
                              "put the first weights back to resume, or train into a new --output")


def write_run_record(output: Path, config: TrainConfig, command: list, features, examples: int, total_steps: int,
                     first_step: int, models: dict) -> None:
    """train_config.json: the settings, the models (model_record), the data used, and one entry per start
    (machine, versions, commit)."""
    path = output / "train_config.json"
    starts = read_json(path, "training record").get("starts", []) if first_step and path.exists() else []
    starts.append({"from_step": first_step, "environment": describe_environment(command)})
    record = {"config": dataclasses.asdict(config), "command": " ".join(command), **models,
              "features": len(features), "examples": examples, "skipped_examples": features.skipped_examples,
              "total_steps": total_steps, "resumed_from_step": first_step, "starts": starts}
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")


# Long on purpose: one run's steps in the order a resumed run must repeat exactly (seed, models, data, optimizer,
# checkpoint, loop, save); split, that order would be spread over functions sharing a dozen locals.
def train(config: TrainConfig, command: list, progress: bool = True) -> Path:
    """Train (or resume) the run in config.output_dir; returns the saved model directory."""
    from transformers import get_linear_schedule_with_warmup

    output = Path(config.output_dir)
    if (output / DONE_FILE).exists():
        check_finished_run(output, config)
        return output / MODEL_DIR
    check_run_directory(config)
    check_room_to_train(config)
    device = training_device(config)
    if device.type == "cpu":
        warn_if_bf16_is_slow(config)
    torch.manual_seed(config.seed)
    init_dir = Path(config.init_dir)
    tokenizer = load_tokenizer(init_dir)
    qa_model, _ = load_qa_model(init_dir, attention_probs_dropout_prob=config.attention_dropout)
    student = Deformer(qa_model, config.deformer_config())
    teacher = None
    if config.alpha > 0 or config.beta > 0:
        teacher = Deformer.from_pretrained(config.teacher_dir, layer=0, question_len=config.question_len,
                                           passage_len=config.passage_len, passage_position_offset="question_len")
        teacher.requires_grad_(False)
        teacher.to(device)
    models = model_record(qa_model, teacher)  # the init weights: before .to(device) and any resume
    student.to(device)

    examples = select_examples(load_squad(config.train_file), config)
    features = featurize(examples, tokenizer, config.question_len, config.passage_len, config.doc_stride,
                         training=True, progress=progress)
    if features.skipped_examples:
        print(f"note: skipped {features.skipped_examples} question(s) whose answer text is not at answer_start",
              file=sys.stderr)
    tensors = {name: torch.from_numpy(getattr(features, name)) for name in (
        "question_input_ids", "question_attention_mask", "passage_input_ids", "passage_attention_mask",
        "start_positions", "end_positions")}
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    total_steps = math.ceil(config.epochs * steps_per_epoch)
    output.mkdir(parents=True, exist_ok=True)  # only now: a run refused above leaves no empty directory

    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in qa_model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in qa_model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    # fused: one kernel for all parameters on a GPU, where a step is otherwise launch-bound
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    first_step, elapsed_s = 0, 0.0
    checkpoint = output / CHECKPOINT_DIR
    log_path = output / "train_log.jsonl"
    clean_stale_staging(checkpoint)  # puts back a checkpoint moved aside by a save that was killed mid-swap
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, config)
        qa_model.load_state_dict(state["model"])  # copied onto the model's device; the optimizer follows it
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        first_step = state["step"]
        check_same_start_models(output / "train_config.json", models)
        # Elapsed time counts the steps kept across resumes, not the work an interruption lost.
        elapsed_s = rewind_log(log_path, first_step, state.get("elapsed_s"))
    elif log_path.exists():
        log_path.unlink()  # a log without a checkpoint belongs to a run that never reached one
    write_run_record(output, config, command, features, len(examples), total_steps, first_step, models)

    started = time.time() - elapsed_s
    with open(log_path, "a") as log:
        student.train()
        bar = tqdm(range(first_step, total_steps), initial=first_step, total=total_steps, desc=output.name,
                   disable=not progress)
        for step in bar:
            epoch, index = divmod(step, steps_per_epoch)
            order = np.random.default_rng(config.seed + epoch).permutation(len(features))
            rows = torch.from_numpy(order[index * config.batch_size:(index + 1) * config.batch_size])
            batch = {name: tensor[rows].to(device, non_blocking=True) for name, tensor in tensors.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                student_upper = []
                student_logits = split_forward(student, batch, student_upper)
                teacher_logits, teacher_layers = None, None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_layers = []
                        teacher_logits = split_forward(teacher, batch, teacher_layers)
            terms = distillation_losses(config, batch, student_logits, student_upper, teacher_logits, teacher_layers)
            loss = config.gamma * terms["ce"] + config.alpha * terms.get("kd", 0.0) + config.beta * terms.get("lrs", 0.0)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"the loss became {float(loss.detach())} at step {step + 1} (learning rate "
                                       f"{scheduler.get_last_lr()[0]:.2e}); the model would be saved broken",
                                       "lower the learning rate and train into a new --output")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(qa_model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step + 1, "loss": float(loss.detach()),
                      **{name: float(value.detach()) for name, value in terms.items()},
                      "lr": scheduler.get_last_lr()[0], "elapsed_s": round(time.time() - started, 1)}
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if (step + 1) % 10 == 0 or step + 1 == total_steps:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < total_steps:
                save_checkpoint(checkpoint, student, optimizer, scheduler, step + 1, config, record["elapsed_s"])
    student.eval()
    student.to("cpu")  # saved and evaluated from the CPU, as every model directory is read
    student.source_dir = init_dir
    weights_bytes = sum(tensor.numel() * tensor.element_size() for tensor in qa_model.state_dict().values())
    ensure_room(output, weights_bytes + 2**20, "model")
    with saving(output, "model"):
        student.save_pretrained(output / MODEL_DIR, replace=True)
    (output / DONE_FILE).write_text(f"{total_steps} steps\n")  # before the checkpoint goes: a kill between keeps
    shutil.rmtree(checkpoint, ignore_errors=True)  # the finished model, not a run to train again
    return output / MODEL_DIR
