"""Issue 25: the tables and the plot of experiments/passage_cache_codecs.py's run records (its `table` command),
drawn from the saved records only: reading records needs none of the graphs or states the runs need.

The student's records (one graph set, k=3) are the positional folders; `--teacher FOLDER` adds the same runs of
the unsplit teacher (its k=0 graph set, whose passage "states" are the embedding output): its own tables, the
split of the student's F1 loss against the teacher into the split's and the codec's shares, and its points on the
plot (stars). Each record's F1 delta and KL are against its own graph set's float32 run.
"""

import json
from pathlib import Path

from passage_cache_codecs import BASELINES, baseline_codec

TARGETS = ((192, 0.3), (96, 0.5), (48, 1.5))  # issue 25: at most this many bytes a token, within this F1
FAMILY_STYLE = {"float32": ("black", "s"), "float16": ("dimgray", "s"), "int8": ("gray", "s"),
                "pq": ("tab:blue", "o"), "pq fisher": ("tab:red", "D"), "pq pca": ("tab:purple", "v"),
                "rq": ("tab:green", "^"), "binary": ("tab:orange", "P"), "pq + token prior": ("tab:cyan", "o"),
                "pq fisher + token prior": ("tab:pink", "D"), "pq opq": ("tab:brown", "X")}
TEACHER_MARKER = "*"  # the teacher's points take their family's colour and this marker


def family(record: dict) -> str:
    transform = record["settings"].get("transform", "none")
    prior = " + token prior" if record["settings"].get("prior", "none") != "none" else ""  # tried, dropped
    return record["codec"] + ("" if transform == "none" else f" {transform}") + prior


def eval_record_row(path: Path, dtype: str, source: str) -> dict:
    """A deformer-eval record of the full dev set through `dtype` states, as a row like the runs' records."""
    record = json.loads(path.read_text())
    hidden, passage_len = record["graph_set"]["manifest"]["model"]["hidden_size"], record["deformer"]["passage_len"]
    return {"codec": dtype, "settings": {}, "describe": f"{dtype} ({source})", "every": 1,
            "bytes_per_token_all_included": round(baseline_codec(dtype)[2](hidden, passage_len), 3),
            "f1": record["f1"], "exact_match": record["exact_match"], "questions": record["questions"],
            "source": str(path), "source_note": source,
            "graph_sha256": {key: value["sha256"] for key, value in record["graph_set"]["manifest"]["graphs"].items()}}


def dtype_records(folder: Path) -> list:
    """The full-dev F1 records of make cache-accuracy (results/passage-cache/f1-per-dtype), as rows like ours."""
    return [eval_record_row(folder / f"k3-kd-lrs-{dtype}.json", dtype, "make cache-accuracy's record")
            for dtype in BASELINES if (folder / f"k3-kd-lrs-{dtype}.json").exists()]


def reference_record(path: Path, runs: list) -> dict:
    """The float32 full-dev row from a deformer-eval record of the same graphs as `runs` (sha256s checked): the
    full set's reference where the experiment's own float32 run on it is missing."""
    row = eval_record_row(path, "float32", f"{path.parent.name}'s deformer-eval record")
    for run in runs:
        if any(run["graph_sha256"].get(key) != sha for key, sha in row["graph_sha256"].items() if key != "full"):
            raise ValueError(f"{path} is of other graphs than {run['graphs']}: not their reference")
    return row


def with_f1_deltas(records: list) -> list:
    """Each row's F1 delta against the float32 row of its subset (the first: the experiment's own run before a
    deformer-eval record of the same F1). `records`: one graph set's."""
    float32 = {}
    for record in records:
        if record["codec"] == "float32":
            float32.setdefault(record["every"], record)
    for record in records:
        if record["codec"] != "float32" and record["every"] in float32:
            record["f1_delta"] = record["f1"] - float32[record["every"]]["f1"]
    return records


def folder_records(folders) -> list:
    return [json.loads(path.read_text()) for folder in folders for path in sorted(Path(folder).glob("*.json"))]


def setting_text(record: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in record["settings"].items()) or record.get("source_note", "-")


def in_table_order(records: list, every: int) -> list:
    return sorted((r for r in records if r["every"] == every),
                  key=lambda r: (-r["bytes_per_token_all_included"], r["codec"], json.dumps(r["settings"])))


def run_rows(records: list, every: int, float32_bytes: float) -> list:
    """The markdown table of every run on this subset (every `every`th question), one line each."""
    lines = ["| codec | setting | bytes / token, all included | share of float32 | questions | F1 | F1 delta vs "
             "float32 | KL from float32 | answers changed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in in_table_order(records, every):
        cells = [r["codec"], setting_text(r), f"{r['bytes_per_token_all_included']:.1f}",
                 f"1/{float32_bytes / r['bytes_per_token_all_included']:.1f}",
                 f"{r.get('questions', 10570):,}", f"{r['f1']:.3f}",
                 "0 (reference)" if r["codec"] == "float32" else
                 f"{r['f1_delta']:+.3f}" if "f1_delta" in r else "",
                 f"{r['kl_from_float32']:.4f}" if r.get("kl_from_float32") is not None else "",
                 str(r.get("answers_changed", "")) if r["codec"] != "float32" else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def codec_key(record: dict) -> tuple:
    """(codec, settings) as text: older records kept a setting's value as its text ("alpha": "0.1"), newer ones
    parsed (0.1)."""
    return record["codec"], json.dumps({key: str(value) for key, value in record["settings"].items()}, sort_keys=True)


def by_codec(records: list, every: int) -> dict:
    """codec_key -> record on this subset; the first of equals wins (the experiment's own float32 run before make
    cache-accuracy's record of the same F1)."""
    found = {}
    for record in records:
        if record["every"] == every:
            found.setdefault(codec_key(record), record)
    return found


def split_and_codec_rows(student: list, teacher: list, every: int) -> list:
    """The student's F1 at each codec against the teacher's float32 F1, cut into the split's share (the student's
    float32 F1 less the teacher's) and the codec's (the student's F1 at the codec less its float32 F1), beside
    what the same codec costs the teacher where the teacher ran it on this subset; for the codecs the teacher ran
    on any subset."""
    students, teachers = by_codec(student, every), by_codec(teacher, every)
    student_float32, teacher_float32 = students.get(("float32", "{}")), teachers.get(("float32", "{}"))
    if student_float32 is None or teacher_float32 is None:
        return []
    split, teacher_codecs = student_float32["f1"] - teacher_float32["f1"], {codec_key(t) for t in teacher}
    lines = ["| codec | setting | bytes / token | questions | teacher (k=0) F1 | codec on the teacher: F1 delta | "
             "KL | student (k=3) F1 | student - teacher float32 | = the split | + the codec on the student | KL |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in in_table_order([s for key, s in students.items() if key in teacher_codecs], every):
        t = teachers.get(codec_key(s))
        teacher_cells = ["", "", ""] if t is None else [
            f"{t['f1']:.3f}", f"{t['f1'] - teacher_float32['f1']:+.3f}",
            f"{t['kl_from_float32']:.4f}" if t.get("kl_from_float32") is not None else ""]
        cells = [s["codec"], setting_text(s), f"{s['bytes_per_token_all_included']:.1f}",
                 f"{s.get('questions', 10570):,}", *teacher_cells,
                 f"{s['f1']:.3f}", f"**{s['f1'] - teacher_float32['f1']:+.3f}**", f"{split:+.3f}",
                 f"{s['f1'] - student_float32['f1']:+.3f}",
                 f"{s['kl_from_float32']:.4f}" if s.get("kl_from_float32") is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def draw(axes, records: list, every: int, teacher: bool) -> list:
    """Each record's point: left its F1 delta (filled: full dev, open: the subset), right its KL on the subset.
    Returns the F1 deltas drawn (for the axis' range)."""
    left, right = axes
    deltas = []
    for record in records:
        colour, marker = FAMILY_STYLE.get(family(record), ("k", "x"))
        # marker sizes (points^2): full dev, the subset, the KL panel (None: matplotlib's default)
        (full, subset, kl), prefix = ((130, 90, 90), "teacher k=0: ") if teacher else ((46, 30, None), "")
        marker = TEACHER_MARKER if teacher else marker
        label = prefix + family(record) + (" (full dev)" if record["every"] == 1 else f" (every {record['every']}th)")
        if "f1_delta" in record or record["codec"] == "float32":
            deltas.append(record.get("f1_delta", 0.0))
            left.scatter(record["bytes_per_token_all_included"], deltas[-1], color=colour, marker=marker,
                         s=full if record["every"] == 1 else subset, label=label,
                         facecolors=colour if record["every"] == 1 else "none")
        if record["every"] == every and record.get("kl_from_float32"):
            right.scatter(record["bytes_per_token_all_included"], record["kl_from_float32"], color=colour,
                          marker=marker, s=kl, label=prefix + family(record))
    return deltas


def plot(student: list, teacher: list, every: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from deformer_bench.files import save_figure_atomically

    # taller with the teacher's points: its legend entries would cover the points near 0 F1 change
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5.8 if teacher else 4.6))
    deltas = draw((left, right), student, every, teacher=False) + draw((left, right), teacher, every, teacher=True)
    for limit, within in TARGETS:
        left.plot([limit / 1.6, limit], [-within, -within], color="tab:red", linewidth=1, alpha=0.6)
        left.axvline(limit, color="tab:red", linewidth=0.6, linestyle=":", alpha=0.6)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xticks([48, 96, 192, 384, 768, 1536])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("bytes a token, all included (states, scales, id, key and length)")
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axis.legend(unique.values(), unique.keys(), fontsize=7 if not teacher else 6,
                    loc="lower right" if axis is left else "upper right")
        axis.grid(alpha=0.3, which="both")
    left.set_ylabel("F1 change from float32 states (points)")
    left.set_ylim(min(-13, min(deltas) - 0.5), max(2, max(deltas) + 0.5))
    left.set_title("F1 against bytes (red: the issue's targets)" + ("; stars: the teacher at k=0, against its own "
                   "float32" if teacher else ""), fontsize=10 if not teacher else 9)
    right.set_yscale("log")
    right.set_ylabel("KL of the answer distribution from float32's (nats)")
    right.set_title(f"KL from float32, every {every}th dev question", fontsize=10)
    figure.tight_layout()
    save_figure_atomically(figure, path)
    plt.close(figure)


def table(args) -> None:
    """The README's tables (markdown, to stdout) and the F1-against-bytes plot from the saved records."""
    student = folder_records(args.records)
    student = with_f1_deltas(student + (dtype_records(Path(args.dtype_records)) if args.dtype_records else []))
    teacher = folder_records([args.teacher]) if args.teacher else []
    if args.teacher_float32:
        teacher.append(reference_record(Path(args.teacher_float32), teacher))
    teacher = with_f1_deltas(teacher)
    float32_bytes = next(r["bytes_per_token_all_included"] for r in student + teacher if r["codec"] == "float32")
    subsets = ((args.every, f"every {args.every}th dev question"), (1, "the full dev set"))
    for records, whose in ((student, ""), (teacher, "the teacher (k=0), ")):
        for every, title in subsets:
            if any(r["every"] == every for r in records):
                print(f"\n{whose}{title}:\n\n" + "\n".join(run_rows(records, every, float32_bytes)))
    for every, title in subsets:
        lines = split_and_codec_rows(student, teacher, every) if teacher else []
        if lines:
            print(f"\nthe student's F1 against the teacher's float32, the split's and the codec's shares, {title}:\n\n"
                  + "\n".join(lines))
    plot(student, teacher, args.every, Path(args.plot))
