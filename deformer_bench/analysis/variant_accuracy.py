"""The F1 of each graph-set variant, from saved `deformer-eval --onnx --variant V --output R.json` records.

    python -m deformer_bench.analysis.variant_accuracy RECORDS_DIR [--out DIR]
    python -m deformer_bench.analysis.variant_accuracy --is-current RECORD GRAPHS VARIANT   (make reference-accuracy)

Reads every record (*.json) in RECORDS_DIR and writes accuracy.csv and accuracy.md to DIR (default: RECORDS_DIR):
per model and variant, F1 / EM and the change from the float32 graphs of the same model. Records of other
datasets, of a question limit, or of different weights under one model name are refused: the rows would not
compare. `make reference-accuracy` makes the records for the reference models.
"""

import argparse
import sys
from pathlib import Path

from ..errors import DeformerBenchError
from ..files import check_distinct_paths, write_texts_atomically
from ..readers import FormatError, read_json

COLUMNS = ["model", "k", "variant", "made_from", "f1", "exact_match", "f1_change", "questions", "windows", "doc_stride",
           "commit", "dirty", "cpu", "onnxruntime", "command"]


def made_from(graph_set: dict) -> str:
    """The variant's parent as its manifest records it ("-" for the float32 graphs)."""
    variant = graph_set.get("variant", "float32")
    if variant == "float32":
        return "-"
    return graph_set["manifest"]["variants"][variant]["parent"]


def read_records(directory: Path) -> list:
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            record = read_json(path, "evaluation record")
            graph_set = record["graph_set"]
            row = {"model": Path(record["model_dir"]).parent.name if Path(record["model_dir"]).name == "model"
                   else Path(record["model_dir"]).name,
                   "k": record["deformer"]["layer"], "variant": graph_set.get("variant", "float32"),
                   "made_from": made_from(graph_set),
                   "f1": record["f1"], "exact_match": record["exact_match"], "questions": record["questions"],
                   "windows": record["windows"], "doc_stride": record["doc_stride"],
                   "commit": (record["environment"]["git"]["commit"] or "no git")[:10],
                   "dirty": record["environment"]["git"]["dirty"], "cpu": record["environment"]["cpu"]["model"],
                   "onnxruntime": record["environment"]["packages"]["onnxruntime"],
                   "command": record["environment"]["command"],
                   "_dataset": Path(record["dataset"]).name, "_limit": record["limit"],
                   "_fingerprint": record["model_fingerprint_sha256"], "_file": path.name}
        except (FormatError, ValueError, KeyError, TypeError) as error:
            raise DeformerBenchError(f"{path} is not a deformer-eval --onnx --output record ({type(error).__name__}: "
                                     f"{error})", "keep only such records in the directory") from None
        records.append(row)
    if not records:
        raise DeformerBenchError(f"{directory} holds no *.json records", "run deformer-eval --onnx ... --output "
                                 f"{directory}/NAME.json first (make reference-accuracy)")
    return records


def check_comparable(rows: list) -> None:
    datasets, limits = {row["_dataset"] for row in rows}, {row["_limit"] for row in rows}
    if len(datasets) > 1 or len(limits) > 1:
        raise DeformerBenchError(f"the records score different question sets (datasets {sorted(datasets)}, "
                                 f"limits {sorted(limits, key=str)})", "keep records of one dataset and limit together")
    seen = {}
    for row in rows:
        earlier = seen.setdefault((row["model"], row["variant"]), row["_file"])
        if earlier != row["_file"]:
            raise DeformerBenchError(f"{earlier} and {row['_file']} both score {row['model']}'s {row['variant']} "
                                     "graphs", "keep one record per model and variant")
    for model in {row["model"] for row in rows}:
        fingerprints = {row["_fingerprint"] for row in rows if row["model"] == model}
        if len(fingerprints) > 1:
            raise DeformerBenchError(f"the records of {model} come from {len(fingerprints)} different weights",
                                     "keep one model's records per name")


def variant_table(rows: list):
    import pandas as pd

    check_comparable(rows)
    table = pd.DataFrame(rows)
    base = table[table["variant"] == "float32"].set_index("model")["f1"]
    table["f1_change"] = [round(f1 - base[model], 2) if model in base.index else None
                          for model, f1 in zip(table["model"], table["f1"])]
    order = {name: index for index, name in enumerate(["float32", "optimized", "int8", "int8-arm64", "float16", "ort"])}
    table["_order"] = table["variant"].map(lambda name: order.get(name, len(order)))
    return table.sort_values(["k", "model", "_order"])[COLUMNS].reset_index(drop=True)


def markdown(table) -> str:
    import pandas as pd

    lines = ["| model | k | variant | made from | F1 | EM | F1 change from float32 | questions |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        change = "-" if row.variant == "float32" or pd.isna(row.f1_change) else f"{row.f1_change:+.2f}"
        lines.append(f"| {row.model} | {row.k} | {row.variant} | {row.made_from} | {row.f1:.2f} | {row.exact_match:.2f} | {change} | "
                     f"{row.questions:,} |")
    machines = sorted(set(table["cpu"]))
    commits = sorted(set(table["commit"] + table["dirty"].map({True: " (dirty)", False: ""})))
    lines += ["", f"Machine: {', '.join(machines)}; onnxruntime {', '.join(sorted(set(table['onnxruntime'])))}; "
                  f"commits {', '.join(commits)}. Commands: accuracy.csv."]
    return "\n".join(lines) + "\n"


def record_is_current(record_path: Path, graphs_dir: Path, variant: str) -> bool:
    """False when there is no record yet; True when it scores exactly the graphs graphs_dir now holds for
    `variant` (same sha256 for every graph); a record of other graphs is refused: it would be kept silently."""
    record_path = Path(record_path)
    if not record_path.exists():
        return False
    from exporters.manifest import load_graph_set

    current = load_graph_set(graphs_dir, variant).manifest["graphs"]
    try:
        graph_set = read_json(record_path, "evaluation record")["graph_set"]
        manifest = graph_set["manifest"]
        scored = manifest["graphs"] if variant == "float32" else manifest["variants"][variant]["graphs"]
        same = all(scored[graph]["sha256"] == entry["sha256"] for graph, entry in current.items())
    except (FormatError, ValueError, KeyError, TypeError) as error:
        raise DeformerBenchError(f"{record_path} is not a deformer-eval --onnx --output record of a {variant} "
                                 f"variant ({type(error).__name__}: {error})", "move it aside") from None
    if not same:
        raise DeformerBenchError(f"{record_path} scores other {variant} graphs than {graphs_dir} holds now",
                                 "move the record aside (results/reference-accuracy/earlier/) to score the new graphs")
    return True


def variant_accuracy_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deformer_bench.analysis.variant_accuracy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("records", type=Path, nargs="?", help="a directory of deformer-eval --output records")
    parser.add_argument("--out", type=Path, help="where accuracy.csv and accuracy.md go (default: RECORDS)")
    parser.add_argument("--is-current", nargs=3, metavar=("RECORD", "GRAPHS", "VARIANT"),
                        help="only say (exit 0) whether RECORD already scores GRAPHS' VARIANT graphs; exit 1 when "
                             "there is no record, 2 when it scores other graphs")
    args = parser.parse_args(argv)
    if args.is_current:
        record, graphs, variant = args.is_current
        return 0 if record_is_current(Path(record), Path(graphs), variant) else 1
    if args.records is None:
        parser.error("give RECORDS (a directory of records) or --is-current")
    if not args.records.is_dir():
        raise DeformerBenchError(f"{args.records} is not a directory", "give the directory of the records")
    out = args.out or args.records
    records = sorted(args.records.glob("*.json"))
    check_distinct_paths({"the table": out / "accuracy.csv", "the table's markdown": out / "accuracy.md"},
                         {f"record #{index + 1}": path for index, path in enumerate(records)})
    table = variant_table(read_records(args.records))
    out.mkdir(parents=True, exist_ok=True)
    write_texts_atomically({out / "accuracy.csv": table.to_csv(index=False), out / "accuracy.md": markdown(table)})
    print(markdown(table), end="")
    return 0


def main(argv=None) -> None:
    from ..cli.common import run_cli

    sys.exit(run_cli(variant_accuracy_main, argv))


if __name__ == "__main__":
    main()
