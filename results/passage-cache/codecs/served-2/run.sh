#!/bin/bash
# Issue 25, two quiet windows of 2026-12-05 (every other job stopped with SIGSTOP; nothing else running):
# window 1 at 72f6a80: decode_cost.py at real lengths, the split product against the one-thread product (3 processes
#   each, alternated), then one pq build at 931ea3e (before the encode changes: PYTHONPATH to a worktree of it);
# window 2 at 9faf624: a build's throughput (float32 and pq m=92 fisher, alternated, 3 rounds), SingleStream from the
#   float32 and the pq cache (alternated, 3 rounds), deformer-bench --served-cache (3 timing processes).
# Window 1 also ran two SingleStream rounds and a deformer-bench --served-cache at 72f6a80 with one_blas_thread's
# code being edited in the tree (its behaviour unchanged: the edit was reverted), kept as window1-* and bench-window1.
set -u
cd "$(git rev-parse --show-toplevel)"
O=${O:-/tmp/issue25-served-2}; mkdir -p $O
D=../shared/data/squad/dev-v1.1.json.gz
G=build/reference-graphs/k3-kd-lrs                  # make scenario-graphs
C=build/scenario-caches/k3-kd-lrs-pq92               # results/passage-cache/codecs/served/run.sh built it
F=build/codec-work/k3-kd-lrs/fisher.npy              # experiments/passage_cache_codecs.py fisher (see ../README.md)
# window 1
for p in 1 2 3; do
  python experiments/decode_cost.py $G $C --stages --output $O/decode-real-split-$p.json
  python experiments/decode_cost.py $G $C --stages --unsplit --output $O/decode-real-unsplit-$p.json
done
python experiments/decode_cost.py $G $C --lengths full --output $O/decode-full-split.json
PYTHONPATH=$BEFORE_TREE deformer-cache build $G --passages $D --out $O/cache-pq-before --dtype pq \
  --codec-settings m=92,transform=fisher --codec-metric $F --quiet > $O/build-pq-before-931ea3e.json
# window 2
for r in 1 2 3; do
  deformer-cache build $G --passages $D --out $O/cache-float32-$r --quiet > $O/build-float32-$r.json
  deformer-cache build $G --passages $D --out $O/cache-pq-$r --dtype pq --codec-settings m=92,transform=fisher \
    --codec-metric $F --quiet > $O/build-pq-$r.json
done
for r in 1 2 3; do
  for cache in float32 pq92; do
    deformer-bench --scenario single-stream --dataset $D --limit 300 --seed 0 --max-duration-s 45 \
      --systems deformer --variant float32 --lengths real --passage-cache build/scenario-caches/k3-kd-lrs-$cache \
      --output $O/window2-ss-$cache-$r --quiet \
      --note "issue 25: decode cost in the served path (split product; committed code): deformer float32 from the $cache cache, round $r (shortened: INVALID by duration)"
  done
done
deformer-bench --graphs $G --served-cache $C --batch-sizes 1 --output $O/bench-window2 --quiet \
  --note "issue 25: online_served_codec (pq m=92 fisher, split product) against online_served, batch 1, quiet"
