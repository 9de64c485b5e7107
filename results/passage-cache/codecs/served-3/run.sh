#!/bin/bash
# Issue 25, two quiet windows of 2026-12-06 (the training job stopped with SIGSTOP; nothing else running), each
# running the steps below: decode_cost.py --paired (numpy's decode, the product in upper's graph, no decode:
# round-robin on the same windows at real lengths; 3 processes), deformer-bench --served-cache (online_served_codec
# runs the look-ups in numpy and the product in upper), and SingleStream from the float32 and the pq cache
# (alternated, 3 rounds; the deformer serves the pq cache as above).
# Window 1 at c5ae47c (the product in upper's graph): files without a suffix. Window 2 at the next commit (the
# look-ups' single take per run, a one-segment read without a second copy): W=-w2.
set -u
cd "$(git rev-parse --show-toplevel)"
O=${O:-/tmp/issue25-served-3}; mkdir -p $O
W=${W:-}
D=../shared/data/squad/dev-v1.1.json.gz
G=build/reference-graphs/k3-kd-lrs                  # make scenario-graphs
C=build/scenario-caches/k3-kd-lrs-pq92               # ../served/run.sh built it
lscpu > $O/lscpu$W.txt
for p in 1 2 3; do
  python experiments/decode_cost.py $G $C --paired --rounds 1000 --output $O/decode-paired$W-$p.json > /dev/null
done
deformer-bench --graphs $G --served-cache $C --batch-sizes 1 --output $O/bench$W --quiet \
  --note "issue 25: online_served_codec (pq m=92 fisher, its product in upper's graph) against online_served, batch 1, quiet"
for r in 1 2 3; do
  for cache in float32 pq92; do
    deformer-bench --scenario single-stream --dataset $D --limit 300 --seed 0 --max-duration-s 45 \
      --systems deformer --variant float32 --lengths real --passage-cache build/scenario-caches/k3-kd-lrs-$cache \
      --output $O/ss$W-$cache-$r --quiet \
      --note "issue 25: decode cost in the served path (pq's product in upper's graph): deformer float32 from the $cache cache, round $r (shortened: INVALID by duration)"
  done
done
