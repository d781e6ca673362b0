#!/usr/bin/env bash
# What cluster mode costs a delivery: the same SMTP load (ringmail-loadgen: 50 connections,
# ~4 KiB messages, 99 recipient accounts) against
#   single-node        ringmail without [cluster] (the baseline, measured in the same run)
#   cluster 1+1+1      one ringmail node with one etcd member and one Garage node: every
#                      acknowledgement waits for the batch's tail chunk in S3 and an etcd
#                      read of the epoch after it (the protocol's cost, not three of
#                      everything sharing two cores)
#   cluster 1+3+3      the same node with three etcd members and three Garage nodes (each
#                      object stored three times)
# The server CPU per message is ringmail's own (etcd and Garage not counted; their CPU over
# the run is printed below the table). Prints a Markdown table.
#
#   bash benches/cluster-smtp.sh [SECONDS]        (default 10 s per setup)
#
# Environment: CONNS (50), SIZE (4096), WARMUP (2), PORT_OFFSET (0); GARAGE (the garage
# binary, see benches/cluster-up.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CONNS=${CONNS:-50}
SIZE=${SIZE:-4096}
WARMUP=${WARMUP:-2}
RING_SMTP=$((20325 + PORT_OFFSET))
BASE=$((27000 + PORT_OFFSET))
rm_build
rm_workdir cluster
# bench1..bench99 exist in both setups (cluster-up.sh makes bench1..bench100).
LG=(--connections "$CONNS" --duration "$SECS" --size "$SIZE" --users "bench%d@example.org:1-99")

# The cluster's own processes: stopped (by cluster-down.sh) on exit too.
cluster_down() {
  if [ -n "${CLUSTER_DIR:-}" ]; then CLUSTER_DIR=$CLUSTER_DIR bash benches/cluster-down.sh >/dev/null 2>&1 || true; fi
  rm_cleanup
}
trap cluster_down EXIT

# Infrastructure CPU (etcd, Garage) over a measured run: seconds, from /proc.
infra_cpu() { # PIDS...
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

{
  rm_ringmail "$W/single" 100 smtp=127.0.0.1:$RING_SMTP
  rm_run single-node - "$RING_PID" deliver smtp --target "127.0.0.1:$RING_SMTP" "${LG[@]}"
  kill -TERM "$RING_PID"
  wait "$RING_PID" || true

  for setup in 1+1+1:1:1 1+3+3:3:3; do
    IFS=: read -r label etcd s3 <<<"$setup"
    export CLUSTER_DIR=$W/cluster-$label
    CLUSTER_DIR=$CLUSTER_DIR BASE_PORT=$BASE ETCD_MEMBERS=$etcd S3_NODES=$s3 NODES=1 PARTITIONS=2 \
      RINGMAIL=$BIN/ringmail bash benches/cluster-up.sh >"$W/up-$label.env"
    node_pid=$(grep '^NODE1_PID=' "$W/up-$label.env" | cut -d= -f2)
    node_smtp=$(grep '^NODE1_SMTP=' "$W/up-$label.env" | cut -d= -f2)
    mapfile -t infra < <(grep -E '^(ETCD|S3)[0-9]+_PID=' "$W/up-$label.env" | cut -d= -f2)
    before=$(infra_cpu "${infra[@]}")
    rm_run "cluster-$label" - "$node_pid" deliver smtp --target "$node_smtp" "${LG[@]}"
    after=$(infra_cpu "${infra[@]}")
    echo "$label $(((after - before)))" >>"$W/infra-cpu"
    CLUSTER_DIR=$CLUSTER_DIR bash benches/cluster-down.sh >/dev/null
  done
} >"$W/rows.tsv"
python3 benches/table.py rows "$W/rows.tsv" --unit messages --per message --count delivered \
  --vs single-node --cpu-vs single-node
echo
while read -r label ticks; do
  echo "etcd and Garage CPU during the cluster $label run: $((ticks / $(getconf CLK_TCK))).$(((ticks % $(getconf CLK_TCK)) * 100 / $(getconf CLK_TCK))) s (not in the server CPU column)."
done <"$W/infra-cpu"
echo "Settings: $CONNS connections, ~$SIZE B messages, 99 recipient accounts, 2 partitions; $WARMUP s warm-up then $SECS s measured per setup; cluster lease 5 s, segments 16 MiB."
rm_machine_line
