#!/usr/bin/env bash
# Kept for old instructions: a multi-node Ray cluster on this machine is now `cnnray cluster up`.
#   cluster/local_cluster.sh start [NODES] [CPUS_PER_NODE]   ->  cnnray cluster up --nodes NODES --cpus-per-node CPUS
#   cluster/local_cluster.sh stop | status                   ->  cnnray cluster down | status
set -euo pipefail
case "${1:-start}" in
  start) exec cnnray cluster up --nodes "${2:-3}" --cpus-per-node "${3:-1}" ;;
  stop) exec cnnray cluster down ;;
  status) exec cnnray cluster status ;;
  *) echo "usage: $0 start [NODES] [CPUS_PER_NODE] | stop | status" >&2; exit 2 ;;
esac
