#!/usr/bin/env bash
# Stops what benches/cluster-up.sh started: exactly the PIDs recorded in
# $CLUSTER_DIR/pids (TERM, then KILL after 5 s), nothing else; a recorded PID whose process
# has gone and whose number now belongs to another program (its command line does not name
# $CLUSTER_DIR) is left alone. Keeps the data and logs in
# $CLUSTER_DIR unless --wipe is given.
#
#   bash benches/cluster-down.sh [--wipe]
set -uo pipefail
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/ringmail-cluster}
PIDS=$CLUSTER_DIR/pids
[ -f "$PIDS" ] || {
  echo "cluster-down.sh: nothing recorded in $PIDS" >&2
  exit 0
}
mapfile -t recorded <"$PIDS"
pids=()
for p in "${recorded[@]}"; do
  [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] &&
    tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF "$CLUSTER_DIR" && pids+=("$p")
done
for p in "${pids[@]}"; do
  [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
done
for _ in $(seq 1 50); do
  alive=0
  for p in "${pids[@]}"; do
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1
  done
  [ $alive = 0 ] && break
  sleep 0.1
done
for p in "${pids[@]}"; do
  [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
done
rm -f "$PIDS"
# S3 data kept outside the cluster directory (S3_DATA_DIR, e.g. on a tmpfs).
if [ -f "$CLUSTER_DIR/s3-data" ]; then
  while read -r d; do
    case $d in */ringmail-s3-*) rm -rf "$d" ;; esac
  done <"$CLUSTER_DIR/s3-data"
  rm -f "$CLUSTER_DIR/s3-data"
fi
echo "stopped ${#pids[@]} processes"
if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$CLUSTER_DIR"
fi
