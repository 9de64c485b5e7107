#!/bin/bash
# Issue 25, a quiet window of 2026-12-06 (the training job stopped with SIGSTOP; nothing else running): the passage's
# read beside the question's lower layers (GraphSetSessions.online_read_ahead). decode_cost.py --paired (numpy's
# decode, the product in upper's graph with the look-ups before lower_question (`graph`) or beside it
# (`read_ahead`), no decode: round-robin on the same windows at real lengths; 3 processes), then SingleStream from
# the float32 and the pq cache (alternated, 3 rounds; the deformer reads either cache beside lower_question).
set -u
cd "$(git rev-parse --show-toplevel)"
O=${O:-/tmp/issue25-served-4}; mkdir -p $O
D=../shared/data/squad/dev-v1.1.json.gz
G=build/reference-graphs/k3-kd-lrs                  # make scenario-graphs
C=build/scenario-caches/k3-kd-lrs-pq92               # ../served/run.sh built it
lscpu > $O/lscpu.txt
git rev-parse HEAD > $O/commit.txt
for p in 1 2 3; do
  python experiments/decode_cost.py $G $C --paired --rounds 1000 --output $O/decode-paired-$p.json > /dev/null
done
for r in 1 2 3; do
  for cache in float32 pq92; do
    deformer-bench --scenario single-stream --dataset $D --limit 300 --seed 0 --max-duration-s 45 \
      --systems deformer --variant float32 --lengths real --passage-cache build/scenario-caches/k3-kd-lrs-$cache \
      --output $O/ss-$cache-$r --quiet \
      --note "issue 25: the cache read beside lower_question: deformer float32 from the $cache cache, round $r (shortened: INVALID by duration)"
  done
done
