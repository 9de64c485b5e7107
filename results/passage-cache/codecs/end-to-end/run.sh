#!/bin/bash
# end-to-end functional check of phase 2 on the shipped k=3 student: deformer-cache build --dtype pq (fisher, m=92) and
# float32 over every 8th dev paragraph, then deformer-eval through each cache on the first 300 questions
set -x
cd /work/h25-codecs
E=${E:-/work/h25-scratch/e2e}  # holds dev-every8th-paragraph.json (every 8th paragraph of dev-v1.1.json.gz)
export OPENBLAS_NUM_THREADS=1
G=build/codec-graphs/k3-kd-lrs
nice -n 10 .venv/bin/deformer-cache build $G --passages $E/dev-every8th-paragraph.json --out $E/cache-pq --dtype pq --codec-settings m=92,transform=fisher --codec-metric build/codec-work/k3-kd-lrs/fisher.npy --quiet > $E/build-pq.json
nice -n 10 .venv/bin/deformer-cache build $G --passages $E/dev-every8th-paragraph.json --out $E/cache-float32 --quiet > $E/build-float32.json
nice -n 10 .venv/bin/deformer-cache info $E/cache-pq > $E/info-pq.json
nice -n 10 .venv/bin/deformer-cache info $E/cache-float32 > $E/info-float32.json
for c in pq float32; do
  nice -n 10 .venv/bin/deformer-eval --dataset $E/dev-every8th-paragraph.json --model reference/k3-kd-lrs/model --onnx $G --passage-cache $E/cache-$c --limit 300 --output $E/eval-$c.json --write-predictions $E/predictions-$c.json --quiet
done
echo done
