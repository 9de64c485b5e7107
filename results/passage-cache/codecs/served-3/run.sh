#!/bin/bash
# Issue 25, one quiet window of 2026-12-06 (the training job stopped with SIGSTOP; nothing else running), at the commit
# that puts pq's product in upper's graph (exporters/codec_upper.py): decode_cost.py --paired (numpy's decode, the
# product in upper's graph, no decode: round-robin on the same windows at real lengths; 3 processes), deformer-bench
# --served-cache (online_served_codec now runs the look-ups in numpy and the product in upper), and SingleStream from
# the float32 and the pq cache (alternated, 3 rounds; the deformer now serves the pq cache as above).
set -u
cd "$(git rev-parse --show-toplevel)"
O=${O:-/tmp/issue25-served-3}; mkdir -p $O
D=../shared/data/squad/dev-v1.1.json.gz
G=build/reference-graphs/k3-kd-lrs                  # make scenario-graphs
C=build/scenario-caches/k3-kd-lrs-pq92               # ../served/run.sh built it
lscpu > $O/lscpu.txt
for p in 1 2 3; do
  python experiments/decode_cost.py $G $C --paired --rounds 1000 --output $O/decode-paired-$p.json > /dev/null
done
deformer-bench --graphs $G --served-cache $C --batch-sizes 1 --output $O/bench --quiet \
  --note "issue 25: online_served_codec (pq m=92 fisher, its product in upper's graph) against online_served, batch 1, quiet"
for r in 1 2 3; do
  for cache in float32 pq92; do
    deformer-bench --scenario single-stream --dataset $D --limit 300 --seed 0 --max-duration-s 45 \
      --systems deformer --variant float32 --lengths real --passage-cache build/scenario-caches/k3-kd-lrs-$cache \
      --output $O/ss-$cache-$r --quiet \
      --note "issue 25: decode cost in the served path (pq's product in upper's graph): deformer float32 from the $cache cache, round $r (shortened: INVALID by duration)"
  done
done
