#!/usr/bin/env bash
# A real multi-node Ray cluster on one machine: a head and N worker nodes, all on 127.0.0.1.
#   cluster/local_cluster.sh start [N_WORKERS] [CPUS_PER_NODE]   then: RAY_ADDRESS=127.0.0.1:6380 cnnray train
#   cluster/local_cluster.sh stop
# The dashboard and job API listen on 127.0.0.1 only; `ray start` enables token authentication,
# so clients need RAY_AUTH_MODE=token and the token in ~/.ray/auth_token (written by ray start).
set -euo pipefail
cmd=${1:-start}
workers=${2:-2}
cpus=${3:-1}
port=${CNNRAY_HEAD_PORT:-6380}
ray_bin=${RAY_BIN:-ray}
case "$cmd" in
  start)
    "$ray_bin" start --head --node-ip-address=127.0.0.1 --port="$port" --num-cpus="$cpus" \
      --dashboard-host=127.0.0.1 --include-dashboard=true --disable-usage-stats
    for i in $(seq 1 "$workers"); do
      "$ray_bin" start --address="127.0.0.1:$port" --node-ip-address=127.0.0.1 --num-cpus="$cpus" \
        --disable-usage-stats
    done
    echo "cluster up: RAY_ADDRESS=127.0.0.1:$port (dashboard http://127.0.0.1:8265)"
    ;;
  stop)
    "$ray_bin" stop --force
    ;;
  *)
    echo "usage: $0 start [N_WORKERS] [CPUS_PER_NODE] | stop" >&2
    exit 2
    ;;
esac
