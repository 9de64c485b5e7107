#!/bin/bash
# Issue 25: decode cost in the scenario benchmark with numpy's default threads (no OPENBLAS_NUM_THREADS: what a user
# runs), deformer float32 from the float32 cache and from the pq m=92 fisher cache, alternated, one round each.
set -u
cd /work/main
D=/work/shared/data/squad/dev-v1.1.json.gz
O=/tmp/i25
unset OPENBLAS_NUM_THREADS OMP_NUM_THREADS
for round in 3; do
  for cache in float32 pq92; do
    .venv/bin/deformer-bench --scenario single-stream --dataset $D --limit 300 --seed 0 --max-duration-s 45 \
      --systems deformer --variant float32 --lengths real --passage-cache build/scenario-caches/k3-kd-lrs-$cache \
      --output $O/ss-$cache-$round-default-threads --quiet \
      --note "issue 25: decode cost in the served path: deformer float32 from the $cache cache, numpy's default threads (shortened: INVALID by duration)" \
      > $O/ss-$cache-$round-default-threads.log 2>&1
  done
done
echo done
