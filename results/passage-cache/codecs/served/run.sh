#!/bin/bash
# Issue 25, quiet machine: (1) a build's throughput, float32 against pq m=92 fisher, the whole SQuAD dev set's passages
# through the shipped k=3 student's lower_passage (build/reference-graphs/k3-kd-lrs); (2) decode cost in the scenario
# benchmark: SingleStream p90 of the deformer float32 system served from the float32 cache against the pq cache,
# alternated, two rounds.
set -u
cd /work/main
D=/work/shared/data/squad/dev-v1.1.json.gz
G=build/reference-graphs/k3-kd-lrs
O=/tmp/i25
mkdir -p $O
export OPENBLAS_NUM_THREADS=1  # as the codec figures ran: numpy's decode on one thread beside onnxruntime's
.venv/bin/deformer-cache build $G --passages $D --out $O/cache-float32 --quiet > $O/build-float32.json 2> $O/build-float32.err
.venv/bin/deformer-cache build $G --passages $D --out build/scenario-caches/k3-kd-lrs-pq92 --dtype pq \
  --codec-settings m=92,transform=fisher --codec-metric /work/h25-codecs/build/codec-work/k3-kd-lrs/fisher.npy \
  --quiet > $O/build-pq.json 2> $O/build-pq.err
.venv/bin/deformer-cache info build/scenario-caches/k3-kd-lrs-pq92 > $O/info-pq.json 2>&1
for round in 1 2; do
  for cache in float32 pq92; do
    .venv/bin/deformer-bench --scenario single-stream --dataset $D --limit 300 --seed 0 --max-duration-s 45 \
      --systems deformer --variant float32 --lengths real --passage-cache build/scenario-caches/k3-kd-lrs-$cache \
      --output $O/ss-$cache-$round --quiet \
      --note "issue 25: decode cost in the served path: deformer float32 from the $cache cache, round $round (shortened: INVALID by duration)" \
      > $O/ss-$cache-$round.log 2>&1
  done
done
echo done
