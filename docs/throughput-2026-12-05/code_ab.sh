#!/bin/bash
# One-worker ZeRO-0 training (the overhead bench's settings) with two checkouts of selfexplain,
# alternating, each in a fresh process and local cluster, with 20 s of steady training sampled
# from /proc (quiet_cluster_ab.py's "run" mode, variant nocleaner: what both checkouts do).
# Run from the repository root:
#   git worktree add /tmp/old <commit>
#   bash docs/throughput-2026-12-05/code_ab.sh /tmp/ab 3 old=/tmp/old new=$PWD
out=$1; rounds=$2; shift 2
mkdir -p "$out"
export HF_HUB_OFFLINE=1
for round in $(seq 1 "$rounds"); do
  for pair in "$@"; do
    label=${pair%%=*}; checkout=${pair#*=}
    PYTHONPATH=$checkout .venv/bin/python docs/throughput-2026-11-29/quiet_cluster_ab.py "$out" nocleaner 1 run \
      > "$out/$label-$round.log" 2>&1
    echo "$label round $round: $(grep -h '^RESULT\|^SAMPLE' "$out/$label-$round.log" | tr '\n' ' ')"
  done
done
