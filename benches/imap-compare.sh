#!/usr/bin/env bash
# IMAP commands: ringmail vs Dovecot IMAP (sdbox, and Maildir unless FORMATS says otherwise;
# high-performance login mode), on loopback, measured in one run by the same client
# (ringmail-loadgen imap), at 10 and then 100 connections. Each account's INBOX is first
# filled to 50 messages of ~4 KiB by IMAP APPEND (--prefill, the same path on every server);
# each connection then logs in (LOGIN without TLS, allowed on loopback for the run), SELECTs
# INBOX and sends 1,000 commands drawn from the mix below (random UIDs) before logging out
# and moving to its next account. Latency is from sending a command to its tagged
# completion. Each run first warms up unmeasured for WARMUP seconds (the first logins of 100
# connections at once take seconds on Dovecot, which forks an imap process per session).
# The server's CPU time (benches/tree_cpu.py, Dovecot's exited workers included) is read at
# the end of the warm-up and after the run. Prints Markdown tables.
#
#   bash benches/imap-compare.sh [SECONDS]        (default 10 s per server and load)
#
# Environment: USERS (100), PER (messages per account, 50), SIZE (4096), COMMANDS (per
# login, 1000), MIX (the --imap-mix), LOADS ("10 100"), WARMUP (10), FORMATS ("sdbox
# maildir"), OUT (a directory to keep the JSON reports in), PORT_OFFSET (0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
USERS=${USERS:-100}
PER=${PER:-50}
SIZE=${SIZE:-4096}
COMMANDS=${COMMANDS:-1000}
LOADS=${LOADS:-10 100}
WARMUP=${WARMUP:-10}
FORMATS=${FORMATS:-sdbox maildir}
OUT=${OUT:-}
MIX=${MIX:-fetch-flags:30,fetch-body:30,search-unseen:10,search-subject:10,store:10,noop:10}
rm_need_peers dovecot /usr/lib/dovecot/imap /usr/lib/dovecot/imap-login
rm_build
rm_workdir imap

RING_PORT=$((21143 + PORT_OFFSET))
rm_ringmail "$W/ringmail" "$USERS" imap=127.0.0.1:$RING_PORT
SERVERS=("ringmail $RING_PORT $RING_PID")

# Dovecot: imap-login in high-performance mode (service_count = 0: long-lived login
# processes, one per core, each serving many clients); one instance per format.
i=0
for fmt in $FORMATS; do
  port=$((21243 + PORT_OFFSET + i))
  rm_dovecot "dovecot-$fmt" "$fmt" imap=$port <<CONF
default_process_limit = 1000
default_client_limit = 10000
mail_max_userip_connections = 1000
service imap-login {
  service_count = 0
  process_min_avail = $(nproc)
  vsz_limit = 1G
}
CONF
  SERVERS+=("dovecot-$fmt $port $DOVE_PID")
  i=$((i + 1))
done

LG=(imap --users "bench%d@example.org:0-$((USERS - 1))" --password bench
  --size "$SIZE" --imap-mix "$MIX" --commands-per-login "$COMMANDS")
for s in "${SERVERS[@]}"; do
  read -r label port _ <<<"$s"
  "$BIN/ringmail-loadgen" "${LG[@]}" --target "127.0.0.1:$port" --connections 20 --duration 0 \
    --prefill "$PER" --report "$W/$label-prefill.json" 2>&1 >/dev/null |
    { grep '^prefill' || true; } | sed "s/^/$label /" >&2
done
sleep 2

runs=()
for c in $LOADS; do
  for s in "${SERVERS[@]}"; do
    read -r label port pid <<<"$s"
    rm_run "$label" "$c" "$pid" all "${LG[@]}" --target "127.0.0.1:$port" --connections "$c" --duration "$SECS"
    if [ -n "$OUT" ]; then mkdir -p "$OUT" && cp "$W/$label-$c.json" "$OUT/"; fi
    runs+=("$label-$c")
  done
done >"$W/rows.tsv"
# (The loop ran in this shell: runs is filled.)
vs=()
for fmt in $FORMATS; do vs+=(--vs "dovecot-$fmt" --cpu-vs "dovecot-$fmt"); done
python3 benches/table.py rows "$W/rows.tsv" --unit commands --per command --count commands \
  --key connections "${vs[@]}"
echo
echo "Per command (p50 / p99 ms; logins, SELECTs and LOGOUTs are not in the rows above):"
echo
python3 benches/table.py commands "$W" "${runs[@]}" \
  --commands login,select,fetch-flags,fetch-body,search-unseen,search-subject,store,noop
echo
echo "Settings: Dovecot $(dovecot --version | cut -d' ' -f1) (${FORMATS// /, }, high-performance login mode); $USERS accounts of $PER messages of ~$SIZE B (IMAP APPEND); mix $MIX; $COMMANDS commands per login; $WARMUP s warm-up then $SECS s measured per server and load."
rm_machine_line
