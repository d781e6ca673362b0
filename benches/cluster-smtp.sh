#!/usr/bin/env bash
# What cluster mode costs a delivery: the same SMTP load (ringmail-loadgen: ~4 KiB messages,
# 99 recipient accounts, at each connection count of CONNS) against
#   single-node         ringmail without [cluster] (the baseline, measured in the same run)
#   cluster-1+1+1-tmpfs one ringmail node with one etcd member and one Garage node whose data
#                       is on a tmpfs: every acknowledgement waits for the batch's tail chunk
#                       in S3 and an etcd read of the epoch after it. The protocol's cost, with
#                       the S3 server's own disk work (a remote service's, in production) off
#                       this machine's disk
#   cluster-1+1+1       the same with Garage's data on the disk
#   cluster-1+3+3       three etcd members and three Garage nodes (each object stored three
#                       times), all on this machine's two cores
# The server CPU per message is ringmail's own (etcd and Garage not counted; their CPU over
# the runs is printed below the table). Prints one Markdown table per connection count.
#
#   bash benches/cluster-smtp.sh [SECONDS]        (default 10 s per run)
#
# Environment: CONNS ("50 400"), SIZE (4096), WARMUP (2), PORT_OFFSET (0); GARAGE (the
# garage binary), SHIP_IN_FLIGHT and SHIP_INTERVAL_MS (the nodes' settings; see
# benches/cluster-up.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CONNS=${CONNS:-50 400}
SIZE=${SIZE:-4096}
WARMUP=${WARMUP:-2}
RING_SMTP=$((20325 + PORT_OFFSET))
BASE=$((27000 + PORT_OFFSET))
rm_build
rm_workdir cluster
# bench1..bench99 exist in both setups (cluster-up.sh makes bench1..bench100).
LG=(--duration "$SECS" --size "$SIZE" --users "bench%d@example.org:1-99")

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
  # Every client comes from 127.0.0.1: the per-address limit must not cap the load.
  RING_CONFIG=$'[limits]\nmax_connections_per_ip = 1000' rm_ringmail "$W/single" 100 smtp=127.0.0.1:$RING_SMTP
  for c in $CONNS; do
    rm_run single-node "$c" "$RING_PID" deliver smtp --target "127.0.0.1:$RING_SMTP" --connections "$c" "${LG[@]}"
  done
  kill -TERM "$RING_PID"
  wait "$RING_PID" || true

  for setup in 1+1+1-tmpfs:1:1:/dev/shm 1+1+1:1:1: 1+3+3:3:3:; do
    IFS=: read -r label etcd s3 s3data <<<"$setup"
    export CLUSTER_DIR=$W/cluster-$label
    CLUSTER_DIR=$CLUSTER_DIR BASE_PORT=$BASE ETCD_MEMBERS=$etcd S3_NODES=$s3 NODES=1 PARTITIONS=2 \
      S3_DATA_DIR=$s3data RINGMAIL=$BIN/ringmail bash benches/cluster-up.sh >"$W/up-$label.env"
    node_pid=$(grep '^NODE1_PID=' "$W/up-$label.env" | cut -d= -f2)
    node_smtp=$(grep '^NODE1_SMTP=' "$W/up-$label.env" | cut -d= -f2)
    mapfile -t infra < <(grep -E '^(ETCD|S3)[0-9]+_PID=' "$W/up-$label.env" | cut -d= -f2)
    for c in $CONNS; do
      before=$(infra_cpu "${infra[@]}")
      rm_run "cluster-$label" "$c" "$node_pid" deliver smtp --target "$node_smtp" --connections "$c" "${LG[@]}" | tee -a "$W/rows.part"
      after=$(infra_cpu "${infra[@]}")
      echo "$label $c $(((after - before)))" >>"$W/infra-cpu"
    done
    CLUSTER_DIR=$CLUSTER_DIR bash benches/cluster-down.sh >/dev/null
  done

  # CPU per message falls as the rate rises (more work per wake-up), so the single node is
  # also measured at the cluster's rate: the same load offered open loop, at the rate the
  # cluster (1+1+1, Garage on disk) reached with as many connections.
  RING_CONFIG=$'[limits]\nmax_connections_per_ip = 1000' rm_ringmail "$W/single-same" 100 smtp=127.0.0.1:$RING_SMTP
  for c in $CONNS; do
    rate=$(awk -F'\t' -v c="$c" '$1 == "cluster-1+1+1" && $2 == c { printf "%d", $3 }' "$W/rows.part")
    rm_run single-node-same-rate "$c" "$RING_PID" deliver smtp --target "127.0.0.1:$RING_SMTP" --connections "$c" --rate "$rate" "${LG[@]}"
  done
  kill -TERM "$RING_PID"
  wait "$RING_PID" || true
} >"$W/rows.tsv"
python3 benches/table.py rows "$W/rows.tsv" --unit messages --per message --count delivered \
  --vs single-node --cpu-vs single-node --cpu-vs single-node-same-rate --key connections
echo
while read -r label c ticks; do
  echo "etcd and Garage CPU during the cluster $label run at $c connections: $((ticks / $(getconf CLK_TCK))).$(((ticks % $(getconf CLK_TCK)) * 100 / $(getconf CLK_TCK))) s (not in the server CPU column)."
done <"$W/infra-cpu"
echo "Settings: $CONNS connections, ~$SIZE B messages, 99 recipient accounts, 2 partitions; $WARMUP s warm-up then $SECS s measured per run; cluster lease 5 s, segments 16 MiB; Garage with LMDB metadata and no block compression; ship_in_flight ${SHIP_IN_FLIGHT:-2 (default)}, ship_interval_ms ${SHIP_INTERVAL_MS:-0 (default)}."
rm_machine_line
