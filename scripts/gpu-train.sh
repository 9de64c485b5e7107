#!/usr/bin/env bash
# The reference models at the full budget, prepared to run in one call on a lent GPU machine (the device tool):
#   here:  make gpu-train-pack                 MiniLM-L6 in float16 + the SQuAD files into .gpu-train/ (~54 MB)
#   there: make gpu-train   (carry .gpu-train) experiments/reference-models-gpu.yaml: the teacher, then the k=3
#                                              KD + LRS student, each evaluated on the full dev set on the GPU
#   here:  make gpu-train-results FROM=<files_at of that call>
# What comes back fits the call's limits (8 files of at most 16 MiB): each finished run's model in float16 with its
# records (deformer_bench.cli.reference_models keep), as a tar split into 15 MiB parts with a sha256 list, plus the
# records of every run (with the parts' sha256 sums) and this log.
#
# That machine has torch (CUDA), transformers, tokenizers and safetensors of its own (no wheels travel: the
# working tree may not pass 64 MiB) and reaches no registry. QUEUE and RUNS override the queue and the runs
# folder (a CPU smoke test: tests/test_gpu_train_script.py); CAP caps the training in seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-train-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-train.log") 2>&1
queue=${QUEUE:-experiments/reference-models-gpu.yaml}
runs=${RUNS:-/tmp/deformer-gpu-runs}
site=${DEFORMER_SITE:-/tmp/deformer-site}
started=$(date +%s)

if [[ "$queue" == experiments/reference-models-gpu.yaml && ! -f .gpu-train/model/config.json ]]; then
    echo "gpu-train: .gpu-train/ is missing: run 'make gpu-train-pack' here and carry .gpu-train"
    exit 2
fi
if [[ -z "${DEFORMER_NO_INSTALL:-}" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . \
        || { echo "gpu-train: installing deformer-bench failed"; exit 2; }
    export PYTHONPATH=$site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "gpu-train: no nvidia-smi"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'CUDA', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

echo "== deformer-train --queue $queue ($(($(date +%s) - started)) s in)"
mkdir -p "$runs"
timeout "${CAP:-520}" python3 -m deformer_bench.cli.train --queue "$queue" --runs-dir "$runs"
status=$?
echo "gpu-train: the queue ended with exit code $status after $(($(date +%s) - started)) s"

kept=$(mktemp -d)
shopt -s nullglob
for run in "$runs"/*/; do
    name=$(basename "$run")
    [[ -f "$run/DONE" ]] || { echo "gpu-train: $name did not finish: nothing of it is kept"; continue; }
    python3 -m deformer_bench.cli.reference_models keep "$run" "$kept/$name" || continue
    tar cf - -C "$kept" "$name" | split -b 15M -d - "$OUT/$name.tar.part-"
done
# the parts' sums travel inside records.tgz (a ninth file would not come back)
parts=("$OUT"/*.tar.part-*)
if ((${#parts[@]})); then
    (cd "$OUT" && sha256sum ./*.tar.part-* > "$runs/parts.sha256")
fi
tar czf "$OUT/records.tgz" -C "$runs" --exclude=model --exclude=checkpoint . 2>/dev/null \
    || echo "gpu-train: no records to pack"
echo "gpu-train: done in $(($(date +%s) - started)) s; back: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"  # what finished came back either way; a failed or capped queue is still a failure
