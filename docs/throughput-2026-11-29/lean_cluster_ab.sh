#!/bin/bash
# A default local cluster against a lean one (no preemption watcher, no Ray Train metrics, idle
# workers killed), alternating, one-worker ZeRO-0 training; tokens/s and the CPU of every process.
#     bash docs/throughput-2026-11-29/lean_cluster_ab.sh
cd "$(dirname "$0")/../.."
for round in 1 2; do
  for v in default lean; do
    if [ $v = lean ]; then export RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0 RAY_TRAIN_METRICS_ENABLED=0 RAY_num_workers_soft_limit=0; else unset RAY_TRAIN_ENABLE_PREEMPTION_WATCHER RAY_TRAIN_METRICS_ENABLED RAY_num_workers_soft_limit; fi
    .venv/bin/python docs/throughput-2026-11-29/one_worker_training.py /tmp/rvp > /tmp/lean_ab_$v$round.log 2>&1 &
    sleep 50; python3 docs/throughput-2026-11-29/proc_cpu.py 30 > /tmp/lean_ab_$v${round}.cpu; wait
    echo "$v $round $(grep -o "'tokens_per_second': [0-9.]*" /tmp/lean_ab_$v$round.log) $(head -2 /tmp/lean_ab_$v${round}.cpu | tail -1)"
  done
done
