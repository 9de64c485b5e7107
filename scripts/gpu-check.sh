#!/usr/bin/env bash
# The GPU check, prepared to run in one call on a lent GPU machine (the device tool; `make gpu-check` there):
# the PyTorch backend on cuda at the BERT-base shape (k=9) and at MiniLM-L6's shape (k=4), batch 1, 8 and 32,
# three fresh timing processes each, plus onnxruntime's CUDA provider where its package is installed (else the
# one skip line is recorded). Everything it measured goes to $OUT/gpu-results.tgz, with nvidia-smi's account
# and the log; `make gpu-results` (here) unpacks it under results/gpu/.
#
# That machine has torch with CUDA, onnxruntime (CPU build), nvidia-ml-py and Python 3.12, and reaches no
# registry: the pinned packages it lacks travel as wheels in .whl/ (`make gpu-wheels` here, then carry .whl).
# Budget: under 8 minutes on an H200 (each model ~3 min); each run is capped so one hang cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
site=${DEFORMER_SITE:-/tmp/deformer-site}
started=$(date +%s)

if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        || { echo "gpu-check: installing the carried wheels failed"; exit 2; }
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . \
    || { echo "gpu-check: installing deformer-bench failed"; exit 2; }
export PYTHONPATH=$site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "gpu-check: nvidia-smi failed (no driver?)"
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

results=$PWD/results-gpu
mkdir -p "$results"
bench() {  # one deformer-bench run, capped; a failure is logged and the next run goes on
    echo "== deformer-bench $* ($(($(date +%s) - started)) s in)"
    timeout "${CAP:-240}" python3 -m deformer_bench.cli.bench "$@" --output "$results" --quiet \
        --note "gpu-check (scripts/gpu-check.sh) on a lent GPU machine" || echo "gpu-check: exit $? for: $*"
}
bench --backend torch --device cuda --profile gpu-cuda-torch --arch bert-base --layer 9
bench --backend torch --device cuda --profile gpu-cuda-torch --arch minilm-l6 --layer 4
CAP=120 bench --backend onnxruntime --device cpu,cuda --arch minilm-l6 --layer 4 --batch-sizes 1 --processes 1 --quick

tar czf "$OUT/gpu-results.tgz" -C "$results" . && echo "gpu-check: $(ls "$results" | wc -l) result folder(s) in \$OUT/gpu-results.tgz"
echo "gpu-check: done in $(($(date +%s) - started)) s"
