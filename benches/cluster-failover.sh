#!/usr/bin/env bash
# How long a partition is without an owner (docs/cluster.md), on a local cluster of one etcd
# member, one Garage node and two ringmail nodes (benches/cluster-up.sh; 1 partition, lease
# LEASE_TTL s):
#   failover   kill -9 of the owner → the first delivery acknowledged by the other node
#              (a client retrying every 50 ms), RUNS times; p50 and max
#   move       `ringmail cluster move` of the partition holding MESSAGES messages, then again
#              after three flag changes on every message (4× the history in the log, the
#              same mail): the move time as the CLI reports it, and the new owner's open
#              time from its log
# Prints Markdown. Every process it starts is stopped on exit (cluster-down.sh).
#
#   bash benches/cluster-failover.sh            (10 runs, 100,000 messages; ~6 minutes)
#
# Environment: RUNS (10; 0 skips the failover runs), FILL_SECS (20: the move's mailbox is
# filled for this long by 100 connections, ~100,000 messages here), LEASE_TTL (5),
# BASE_PORT (28000), GARAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
MESSAGES=${MESSAGES:-?}
FILL_SECS=${FILL_SECS:-20}
LEASE_TTL=${LEASE_TTL:-5}
BASE_PORT=${BASE_PORT:-28000}
BIN=${BIN:-target/release}
[ "${RM_BUILT:-0}" = 1 ] || cargo build --release -q -p ringmail -p ringmail-loadgen --bin ringmail --bin ringmail-loadgen
W=$(mktemp -d /var/tmp/ringmail-failover.XXXXXX)
export CLUSTER_DIR=$W/cluster
trap 'bash benches/cluster-down.sh >/dev/null 2>&1; rm -rf "$W"' EXIT
ETCD_MEMBERS=1 S3_NODES=1 NODES=2 PARTITIONS=1 USERS=10 LEASE_TTL=$LEASE_TTL BASE_PORT=$BASE_PORT \
  RINGMAIL=$BIN/ringmail bash benches/cluster-up.sh >"$W/env"
# shellcheck disable=SC1091
source "$W/env"
CFG=$NODE1_CONFIG
owner() { "$BIN/ringmail" cluster status --config "$CFG" | awk '$1 == "0" {print $2}'; }
smtp_of() { if [ "$1" = node1 ]; then echo "$NODE1_SMTP"; else echo "$NODE2_SMTP"; fi; }
other() { if [ "$1" = node1 ]; then echo node2; else echo node1; fi; }

# A client that delivers to ADDR every 50 ms until one is accepted; prints the time (s,
# since the epoch) of that acknowledgement.
first_ack() { # ADDR
  python3 - "$1" <<'PY'
import smtplib, sys, time
host, port = sys.argv[1].split(":")
while True:
    try:
        s = smtplib.SMTP(host, int(port), timeout=5)
        s.sendmail("probe@example.org", ["bench1@example.org"], "Subject: probe\r\n\r\nprobe\r\n")
        print(f"{time.time():.3f}")
        s.quit()
        break
    except (smtplib.SMTPException, OSError):
        time.sleep(0.05)
PY
}

if [ "$RUNS" -gt 0 ]; then
echo "## Failover ($RUNS runs, lease $LEASE_TTL s)"
echo
times=()
for run in $(seq 1 "$RUNS"); do
  o=$(owner)
  [ -n "$o" ] && [ "$o" != - ] || { echo "no owner" >&2; exit 1; }
  survivor=$(other "$o")
  pid_var="${o^^}_PID"
  first_ack "$(smtp_of "$survivor")" >"$W/ack" &
  client=$!
  sleep 0.3
  killed_at=$(python3 -c 'import time; print(f"{time.time():.3f}")')
  kill -9 "${!pid_var}"
  wait "$client"
  t=$(python3 -c "print(f'{$(cat "$W/ack") - $killed_at:.2f}')")
  times+=("$t")
  echo "run $run: $o killed, $survivor acknowledged after $t s" >&2
  # The killed node comes back (same data, ports) and the cluster settles.
  new_pid=$(bash "$CLUSTER_DIR/$o/start.sh")
  printf -v "$pid_var" '%s' "$new_pid"
  sleep $((LEASE_TTL + 3))
done
printf '%s\n' "${times[@]}" | sort -n >"$W/times"
p50=$(awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}' "$W/times")
max=$(tail -1 "$W/times")
echo "| runs | p50 s | max s | all (s, sorted) |"
echo "|---:|---:|---:|---|"
echo "| $RUNS | $p50 | $max | $(paste -sd' ' "$W/times") |"
echo
fi

echo "## Planned move"
echo
o=$(owner)
# About MESSAGES messages to one mailbox (the generator runs for a time, not a count).
"$BIN/ringmail-loadgen" smtp --target "$(smtp_of "$o")" --users "bench1@example.org" \
  --connections 100 --duration "$FILL_SECS" --report "$W/fill.json" >/dev/null 2>"$W/fill.log" ||
  true # (a few refused connections make it exit 1; the count below is what was delivered)
[ -s "$W/fill.json" ] || { tail -5 "$W/fill.log" >&2; exit 1; }
MESSAGES=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['commands']['deliver']['count'])" "$W/fill.json")
move_once() { # prints: seconds the CLI reports, open ms from the new owner's log
  local from to line
  from=$(owner)
  to=$(other "$from")
  line=$("$BIN/ringmail" cluster move 0 "$to" --config "$CFG")
  sleep 1
  open=$(grep 'partition taken over' "$CLUSTER_DIR/$to/log" | tail -1 | sed 's/.*took_ms=\([0-9]*\).*/\1/')
  echo "$(echo "$line" | sed 's/.* in \([0-9.]*\) s/\1/') $open"
}
read -r move1 open1 < <(move_once)
# Three flag changes on every message: 3× more records in the log, the same mail.
python3 - "$(smtp_of "$(owner)" | sed 's/:.*//')" "$((BASE_PORT + 62))" <<'PY'
import imaplib, sys
c = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
c.login("bench1@example.org", "bench")
c.select("INBOX")
for op in ("+FLAGS", "-FLAGS", "+FLAGS"):
    typ, _ = c.uid("STORE", "1:*", op + ".SILENT", "(\\Seen)")
    assert typ == "OK", typ
c.logout()
PY
read -r move4 open4 < <(move_once)
echo "| partition | move s (CLI) | new owner's open ms |"
echo "|---|---:|---:|"
echo "| $MESSAGES messages | $move1 | $open1 |"
echo "| the same, after 3 flag changes on each (4× history) | $move4 | $open4 |"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r); $(date -u '+%F %H:%M') UTC."
