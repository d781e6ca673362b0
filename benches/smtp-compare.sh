#!/usr/bin/env bash
# Durable SMTP delivery: ringmail vs Postfix's smtp-sink (stores nothing) vs Dovecot LMTP
# (Maildir, fsync on), all on loopback, measured in one run by the same client
# (ringmail-loadgen: 50 connections, ~4 KiB messages, 100 recipient accounts). Each run
# warms up WARMUP s unmeasured; the server's CPU time is read over the measured window.
# Prints a Markdown table.
#
#   bash benches/smtp-compare.sh [SECONDS]        (default 10 s per server)
#
# Environment: CONNS (50), USERS (100), SIZE (4096), WARMUP (2), PORT_OFFSET (0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CONNS=${CONNS:-50}
USERS=${USERS:-100}
SIZE=${SIZE:-4096}
WARMUP=${WARMUP:-2}
SINK_PORT=$((20025 + PORT_OFFSET))
RING_SMTP=$((20125 + PORT_OFFSET))
RING_LMTP=$((20124 + PORT_OFFSET))
DOVE_LMTP=$((20224 + PORT_OFFSET))
rm_need_peers smtp-sink dovecot /usr/lib/dovecot/lmtp
rm_build
rm_workdir smtp

# Postfix smtp-sink: accepts and discards.
rm_port_free $SINK_PORT
smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 1000 &
SINK_PID=$!
rm_wait_port $SINK_PORT

rm_ringmail "$W/ringmail" "$USERS" smtp=127.0.0.1:$RING_SMTP lmtp=127.0.0.1:$RING_LMTP

# Dovecot LMTP, Maildir, fsync always (ringmail's 250 is after fdatasync too).
rm_dovecot dovecot-lmtp maildir lmtp=$DOVE_LMTP <<<"mail_fsync = always"

LG=(--connections "$CONNS" --duration "$SECS" --size "$SIZE" --users "bench%d@example.org:0-$((USERS - 1))")
{
  rm_run smtp-sink - $SINK_PID deliver smtp --target "127.0.0.1:$SINK_PORT" "${LG[@]}"
  rm_run ringmail-smtp - "$RING_PID" deliver smtp --target "127.0.0.1:$RING_SMTP" "${LG[@]}"
  rm_run ringmail-lmtp - "$RING_PID" deliver lmtp --target "127.0.0.1:$RING_LMTP" "${LG[@]}"
  rm_run dovecot-lmtp - "$DOVE_PID" deliver lmtp --target "127.0.0.1:$DOVE_LMTP" "${LG[@]}"
} >"$W/rows.tsv"
python3 benches/table.py rows "$W/rows.tsv" --unit messages --per message --count delivered \
  --vs smtp-sink --vs dovecot-lmtp --cpu-vs dovecot-lmtp
echo
echo "Settings: $CONNS connections, ~$SIZE B messages, $USERS recipient accounts; Dovecot $(dovecot --version | cut -d' ' -f1) LMTP (Maildir, \`mail_fsync = always\`); $WARMUP s warm-up then $SECS s measured per server."
rm_machine_line
