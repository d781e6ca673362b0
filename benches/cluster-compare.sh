#!/usr/bin/env bash
# Many nodes as one mail server (docs/cluster.md, part 2), on a local cluster of three
# ringmail nodes, one etcd member and one Garage node (benches/cluster-up.sh, 3 partitions,
# lease LEASE_TTL s). Three parts, each measured in the same run as its baseline:
#
#   proxied IMAP   every partition on node1; the IMAP workload (loadgen's default mix,
#                  100 commands per login) against node1 (direct) and against node2, which
#                  proxies every session to node1
#   cross-node     SMTP with 10 recipients per message into node1: every partition on
#                  node1, then one partition on each node (each message stored by three
#                  nodes, two of them through their cluster ports)
#   failover       mixed load (smtp:60,imap:30,pop3:10) spread over all three nodes for
#                  FAIL_SECS s; node2 is killed (SIGKILL) at KILL_AT s and started again
#                  RESTART_AFTER s later, as a service manager would. Throughput and errors
#                  per second, the time until throughput is back to >= 90 % of what it was
#                  before the kill, and `ringmail-loadgen verify` (IMAP, through node1) of
#                  every acknowledged message. The plot: SVG (OUT_SVG)
#
# Server CPU is the three ringmail nodes' together (etcd and Garage not counted). Prints
# Markdown. Every process it starts is stopped on exit (cluster-down.sh).
#
#   bash benches/cluster-compare.sh [SECONDS]      (default 10 s per measured run; ~4 min)
#
# Environment: CONNS (20), FAIL_SECS (40), KILL_AT (15), RESTART_AFTER (2), LEASE_TTL (5),
# WARMUP (2), BASE_PORT (29000), OUT_SVG (docs/cluster-failover.svg), GARAGE, KEEP_LOGS (a
# directory: the nodes', etcd's and Garage's logs are copied there at the end).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CONNS=${CONNS:-20}
FAIL_SECS=${FAIL_SECS:-40}
KILL_AT=${KILL_AT:-15}
RESTART_AFTER=${RESTART_AFTER:-2}
LEASE_TTL=${LEASE_TTL:-5}
WARMUP=${WARMUP:-2}
BASE_PORT=${BASE_PORT:-29000}
OUT_SVG=${OUT_SVG:-docs/cluster-failover.svg}
rm_build
rm_workdir cluster-compare
export CLUSTER_DIR=$W/cluster
cluster_down() {
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS"
    for d in "$CLUSTER_DIR"/*/; do
      [ -f "$d/log" ] && cp "$d/log" "$KEEP_LOGS/$(basename "$d").log"
    done
  fi
  CLUSTER_DIR=$CLUSTER_DIR bash benches/cluster-down.sh >/dev/null 2>&1 || true
  rm_cleanup
}
trap cluster_down EXIT

ETCD_MEMBERS=1 S3_NODES=1 NODES=3 PARTITIONS=3 USERS=100 LEASE_TTL=$LEASE_TTL \
  BASE_PORT=$BASE_PORT RINGMAIL=$BIN/ringmail bash benches/cluster-up.sh >"$W/env"
# shellcheck disable=SC1091
source "$W/env"
CFG=$NODE1_CONFIG
nodes_pids() { echo "$NODE1_PID,$NODE2_PID,$NODE3_PID"; }
place() { # NODE-FOR-PARTITION-0 NODE-FOR-1 NODE-FOR-2
  local p=0 n
  for n in "$@"; do
    "$BIN/ringmail" cluster move "$p" "$n" --config "$CFG" >&2
    p=$((p + 1))
  done
}

LG=(--users "bench%d@example.org:1-100" --duration "$SECS")
place node1 node1 node1
# The mailboxes IMAP reads: 20 messages each, appended through node1. Then every user
# logs in on both nodes once, so each node's password cache is as warm (argon2 on a cold
# cache would dominate the first seconds of a run).
"$BIN/ringmail-loadgen" imap --target "$NODE1_IMAP" --users "bench%d@example.org:1-100" \
  --prefill 20 --connections 4 --duration 1 >/dev/null 2>&1
for t in "$NODE1_IMAP" "$NODE2_IMAP"; do
  "$BIN/ringmail-loadgen" imap --target "$t" --users "bench%d@example.org:1-100" \
    --connections "$CONNS" --duration 6 >/dev/null 2>&1
done
# Pinned: node1 and the load generator on core 0, node2 on core 1, as if the node that
# proxies had a machine of its own (on two shared cores the relay's CPU is taken from the
# owner's and the client's).
pin() { # CORES-FOR-NODE1+CLIENT CORES-FOR-NODE2
  taskset -a -p -c "$1" "$NODE1_PID" >/dev/null
  taskset -a -p -c "$2" "$NODE2_PID" >/dev/null
  taskset -p -c "$1" $$ >/dev/null
}
{
  rm_run imap-direct "$CONNS" "$(nodes_pids)" all imap --target "$NODE1_IMAP" --connections "$CONNS" "${LG[@]}"
  rm_run imap-proxied "$CONNS" "$(nodes_pids)" all imap --target "$NODE2_IMAP" --connections "$CONNS" "${LG[@]}"
} >"$W/imap.tsv"
{
  pin 0 1
  rm_run imap-direct-pinned "$CONNS" "$(nodes_pids)" all imap --target "$NODE1_IMAP" --connections "$CONNS" "${LG[@]}"
  rm_run imap-proxied-pinned "$CONNS" "$(nodes_pids)" all imap --target "$NODE2_IMAP" --connections "$CONNS" "${LG[@]}"
  pin 0-1 0-1
} >"$W/imap-pinned.tsv"
{
  rm_run smtp-10-rcpts-one-node "$CONNS" "$(nodes_pids)" deliver smtp --target "$NODE1_SMTP" \
    --connections "$CONNS" --recipients 10 "${LG[@]}"
  place node1 node2 node3
  rm_run smtp-10-rcpts-three-nodes "$CONNS" "$(nodes_pids)" deliver smtp --target "$NODE1_SMTP" \
    --connections "$CONNS" --recipients 10 "${LG[@]}"
} >"$W/smtp.tsv"
p99_ratio() { # ROWS.tsv: the second row's p99 over the first's
  awk -F'\t' 'NR == 1 { a = $5 } NR == 2 { printf "%.2f", (a > 0 ? $5 / a : 0) }' "$1"
}
echo "## Proxied IMAP sessions"
echo
python3 benches/table.py rows "$W/imap.tsv" --unit commands --per command --count commands \
  --vs imap-direct --cpu-vs imap-direct --key connections
echo
echo "Every partition on node1; the same IMAP load (loadgen's default mix, 100 commands per login, logins counted) against node1 (direct) and node2 (every session proxied to node1 through its cluster port), all processes on both cores. p99 proxied / direct: $(p99_ratio "$W/imap.tsv")×."
echo
python3 benches/table.py rows "$W/imap-pinned.tsv" --unit commands --per command --count commands \
  --vs imap-direct-pinned --cpu-vs imap-direct-pinned --key connections
echo
echo "The same, pinned: node1 and the load generator on core 0, node2 (the relay) alone on core 1, as a node of its own would be. p99 proxied / direct: $(p99_ratio "$W/imap-pinned.tsv")×."
echo
echo "## One message to 10 recipients: on one node, and on three"
echo
python3 benches/table.py rows "$W/smtp.tsv" --unit messages --per message --count delivered \
  --vs smtp-10-rcpts-one-node --cpu-vs smtp-10-rcpts-one-node --key connections
echo
echo "SMTP into node1, 10 recipients per message: every partition on node1, then one partition per node (each message stored on three nodes, forwarded to two as pipelined LMTP; the 250 waits for every copy). p99 three nodes / one node: $(p99_ratio "$W/smtp.tsv")×."

# ---- failover under mixed load ------------------------------------------------------------
smtp_targets="$NODE1_SMTP,$NODE2_SMTP,$NODE3_SMTP"
imap_targets="$NODE1_IMAP,$NODE2_IMAP,$NODE3_IMAP"
pop3_targets="$NODE1_POP3,$NODE2_POP3,$NODE3_POP3"
"$BIN/ringmail-loadgen" mixed --mix-ratio smtp:60,imap:30,pop3:10 --connections "$((CONNS * 2))" \
  --smtp-target "$smtp_targets" --imap-target "$imap_targets" --pop3-target "$pop3_targets" \
  --users "bench%d@example.org:1-100" --duration "$FAIL_SECS" --report "$W/failover.json" \
  >"$W/failover.txt" 2>"$W/failover.log" &
lg=$!
sleep "$KILL_AT"
kill -9 "$NODE2_PID"
echo "node2 killed at $KILL_AT s" >&2
sleep "$RESTART_AFTER"
NODE2_PID=$(bash "$CLUSTER_DIR/node2/start.sh")
wait "$lg" || true
"$BIN/ringmail-loadgen" verify --protocol imap --target "$NODE1_IMAP" --report "$W/failover.json" \
  >"$W/verify.txt" 2>&1 && verified=ok || verified=FAILED
"$BIN/ringmail-loadgen" plot --report "$W/failover.json" --out "$OUT_SVG" >/dev/null
echo
echo "## Failover under mixed load"
echo
python3 - "$W/failover.json" "$KILL_AT" "$RESTART_AFTER" "$verified" "$W/verify.txt" "$OUT_SVG" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
kill_at, restart, verified, verify_out, svg = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
t, e = r["timeline"], r.get("error_timeline", [])
before = t[2:kill_at] or t[:kill_at]
base = sum(before) / max(len(before), 1)
# Back: the first second after the kill from which three in a row reach 90 % of before.
back = next((i for i in range(kill_at, len(t) - 2) if all(x >= 0.9 * base for x in t[i:i + 3])), None)
low = min(t[kill_at:kill_at + 15] or [0])
errors = sum(e[kill_at:]) if e else sum(r["errors"].values())
# The last second with errors, counted from the kill (the lease running out and the takeover).
last_err = max((i for i, x in enumerate(e) if x > 0 and i >= kill_at - 1), default=None)
print(f"Mixed load (smtp:60, imap:30, pop3:10) over three nodes, {r['connections']} connections, {len(t)} s; node2 killed at {kill_at} s and started again {restart} s later.")
print()
print("| | |")
print("|---|---:|")
print(f"| completions/s before the kill (mean of s 2-{kill_at}) | {base:.0f} |")
print(f"| lowest second after the kill | {low} ({low / max(base, 1):.2f}x) |")
print(f"| back to >= 90 % after the kill | {'%d s' % (back - kill_at) if back is not None else 'not within the run'} |")
print(f"| errors after the kill | {errors} |")
print(f"| errors end after the kill | {'%d s' % (last_err + 1 - kill_at) if last_err is not None else 'no errors'} |")
print(f"| errors, all | {sum(r['errors'].values())} ({', '.join(f'{k}: {v}' for k, v in sorted(r['errors'].items())) or 'none'}) |")
acked = sum(len(v) for v in r.get("acked", {}).values())
print(f"| acknowledged deliveries verified through node1 (IMAP) | {verified}: {acked} |")
print()
print("Per second (completions / errors): " + " ".join(f"{c}/{e[i] if i < len(e) else 0}" for i, c in enumerate(t)))
print()
print(f"Plot: {svg} (completions per second; errors per second in red).")
if verified != "ok":
    print()
    print("verify said: " + open(verify_out).read()[-2000:])
PY
echo
echo "Settings: $CONNS connections (the failover run: $((CONNS * 2))), $SECS s measured per run after $WARMUP s warm-up, 100 users, 3 partitions, lease $LEASE_TTL s, one etcd member, one Garage node (LMDB, no compression), data on disk."
rm_machine_line
[ "$verified" = ok ]
