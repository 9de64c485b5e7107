"""The tokenizer of a model directory (transformers' AutoTokenizer, no torch): what the commands that read a
model or a graph set's source tokenize with."""

from pathlib import Path

from .contracts.errors import ModelDirError, first_line


def has_tokenizer(model_dir: Path) -> bool:
    return any((Path(model_dir) / name).exists() for name in ("tokenizer.json", "vocab.txt", "vocab.json"))


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    if not has_tokenizer(model_dir):
        raise ModelDirError(f"{model_dir} has no tokenizer (tokenizer.json or vocab file)",
                            "save the tokenizer into the model directory (tokenizer.save_pretrained)")
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:  # the tokenizers library raises plain Exception on a corrupt tokenizer.json
        raise ModelDirError(f"cannot load the tokenizer of {model_dir}: {type(error).__name__}: {first_line(error)}",
                            "save the tokenizer again (tokenizer.save_pretrained) or copy it whole") from None
