"""Which passage position offset keeps more of the unsplit model's behaviour?

For real SQuAD questions and passages, the unsplit model reads `[CLS] q [SEP] p [SEP]` with the passage
at positions len(q)+2 onwards. A DeFormer must fix the passage's first position independently of the
question: 0 (the paper's code) or the padded question length. We compare, token by token, the passage
states of the DeFormer with the unsplit model's, at layer k and at the last layer (what a QA head reads),
by cosine similarity, for every k and both offsets, without any fine-tuning.

    python -m deformer_bench.cli.analysis.position_offset --dataset ../shared/data/squad/dev-v1.1.json.gz \
        --count 300 --out results/position-offset
"""

import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ...architectures import architecture_for
from ...files import staged_directory
from ...model import POSITION_OFFSETS, Deformer, DeformerConfig, default_model_dir, load_qa_model
from ...squad.data import load_squad
from ...tokenizer import load_tokenizer
from .study_cli import run_study_cli

RESULTS_FILE = "position_offset.json"


def encode(tokenizer, examples, question_len: int, passage_len: int):
    """Question `[CLS] q [SEP]` and passage `p [SEP]` tensors, padded; plus their true lengths."""
    questions = tokenizer([e.question for e in examples], truncation=True, max_length=question_len,
                          padding="max_length", return_tensors="pt")
    passages = tokenizer([e.context for e in examples], add_special_tokens=False, truncation=True,
                         max_length=passage_len - 1)["input_ids"]
    passage_ids = torch.full((len(examples), passage_len), tokenizer.pad_token_id)
    passage_mask = torch.zeros((len(examples), passage_len), dtype=torch.long)
    for row, ids in enumerate(passages):
        ids = ids + [tokenizer.sep_token_id]
        passage_ids[row, :len(ids)] = torch.tensor(ids)
        passage_mask[row, :len(ids)] = 1
    return questions["input_ids"], questions["attention_mask"], passage_ids, passage_mask


def unsplit_states(qa_model, question_ids, question_mask, passage_ids, passage_mask):
    """Hidden states of the unsplit model on the contiguous `[CLS] q [SEP] p [SEP]` (no gap), the passage with
    the token type its family uses (architectures.py: 1 for BERT, 0 for RoBERTa, which has one type)."""
    architecture = architecture_for(qa_model.config.model_type)
    passage_type = architecture.passage_token_type(qa_model.config)
    rows, lengths = [], []
    for q_ids, q_mask, p_ids, p_mask in zip(question_ids, question_mask, passage_ids, passage_mask):
        q_len, p_len = int(q_mask.sum()), int(p_mask.sum())
        rows.append((torch.cat([q_ids[:q_len], p_ids[:p_len]]), q_len, p_len))
        lengths.append(q_len + p_len)
    width = max(lengths)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, (sequence, q_len, p_len) in enumerate(rows):
        ids[row, :len(sequence)] = sequence
        mask[row, :len(sequence)] = 1
        types[row, q_len:len(sequence)] = passage_type
    encoder = architecture.encoder_model(qa_model)
    hidden = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states
    return hidden, [(q_len, p_len) for _, q_len, p_len in rows]


def passage_cosine(deformer_states, unsplit, spans, question_len: int) -> list:
    """Mean cosine similarity over each example's passage tokens (DeFormer vs unsplit)."""
    scores = []
    for row, (q_len, p_len) in enumerate(spans):
        ours = deformer_states[row, :p_len] if question_len is None else deformer_states[row, question_len:question_len + p_len]
        theirs = unsplit[row, q_len:q_len + p_len]
        scores.append(float(torch.nn.functional.cosine_similarity(ours, theirs, dim=-1).mean()))
    return scores


def run_study(model_dir: Path, dataset: Path, count: int, question_len: int, passage_len: int,
              batch_size: int = 16, progress: bool = True) -> dict:
    tokenizer = load_tokenizer(Path(model_dir))
    qa_model, _ = load_qa_model(Path(model_dir))
    examples = load_squad(dataset)[:count]
    num_layers = qa_model.config.num_hidden_layers
    scores = {(offset, k, where): [] for offset in POSITION_OFFSETS for k in range(1, num_layers + 1)
              for where in ("layer_k", "last_layer")}
    batches = range(0, len(examples), batch_size)
    with torch.no_grad():
        for start in tqdm(batches, desc="offset study", unit="batch", disable=not progress):
            tensors = encode(tokenizer, examples[start:start + batch_size], question_len, passage_len)
            unsplit, spans = unsplit_states(qa_model, *tensors)
            for offset in POSITION_OFFSETS:
                for k in range(1, num_layers + 1):
                    deformer = Deformer(qa_model, DeformerConfig(k, question_len, passage_len, offset))
                    question_hidden = deformer.lower_question(tensors[0], tensors[1])
                    passage_hidden = deformer.lower_passage(tensors[2], tensors[3])
                    upper_states = []
                    deformer.upper(question_hidden, tensors[1], passage_hidden, tensors[3], upper_states)
                    last = upper_states[-1] if upper_states else torch.cat([question_hidden, passage_hidden], 1)
                    scores[(offset, k, "layer_k")] += passage_cosine(passage_hidden, unsplit[k], spans, None)
                    scores[(offset, k, "last_layer")] += passage_cosine(last, unsplit[num_layers], spans, question_len)
    rows = [{"offset": offset, "layer": k, "compared_at": where, "mean_cosine": sum(values) / len(values),
             "min_cosine": min(values), "examples": len(values)}
            for (offset, k, where), values in scores.items()]
    return {"format_version": 1, "model_dir": str(model_dir), "dataset": str(dataset), "count": len(examples),
            "question_len": question_len, "passage_len": passage_len, "rows": rows}


def write_outputs(result: dict, out_dir: Path) -> None:
    """JSON, CSV and plot, written to a temporary directory beside OUT and renamed into place."""
    with staged_directory(out_dir) as staging:
        _write_files(result, staging)


def _write_files(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    (out_dir / RESULTS_FILE).write_text(json.dumps(result, indent=1) + "\n")
    frame = pd.DataFrame(result["rows"])
    frame.to_csv(out_dir / "position_offset.csv", index=False)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, where in zip(axes, ("layer_k", "last_layer")):
        for offset, rows in frame[frame["compared_at"] == where].groupby("offset"):
            axis.plot(rows["layer"], rows["mean_cosine"], marker="o", label=f"offset {offset}")
        axis.set_xticks(sorted(frame["layer"].unique()))
        axis.set_xlabel("separation layer k")
        axis.set_ylabel("mean cosine similarity to the unsplit model")
        axis.set_title(f"passage states at {'layer k' if where == 'layer_k' else 'the last layer'}")
        axis.legend()
    figure.tight_layout()
    figure.savefig(out_dir / "position_offset.png", dpi=110)
    plt.close(figure)


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, help="model directory (default: MiniLM-L6)")
    parser.add_argument("--question-len", type=int, default=27)
    parser.add_argument("--passage-len", type=int, default=293)


def run_from_args(args) -> dict:
    return run_study(args.model or default_model_dir(), args.dataset, args.count, args.question_len, args.passage_len)


def main(argv=None) -> None:
    sys.exit(run_study_cli("deformer_bench.cli.analysis.position_offset", __doc__.split("\n\n")[0], add_arguments,
                           run_from_args, write_outputs, RESULTS_FILE, argv))


if __name__ == "__main__":
    main()
