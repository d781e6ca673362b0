#!/usr/bin/env bash
# Durable SMTP delivery: ringmail vs Postfix's smtp-sink (stores nothing) vs Dovecot LMTP
# (Maildir, fsync on), all on loopback, measured in one run by the same client
# (ringmail-loadgen: 50 connections, ~4 KiB messages). Prints a Markdown table.
#
#   bash benches/smtp-compare.sh [SECONDS]        (default 10 s per server)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${CONNS:-50}
if ! command -v smtp-sink >/dev/null || [ ! -x /usr/lib/dovecot/lmtp ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postfix dovecot-core dovecot-lmtpd >/dev/null
fi
cargo build --release -q -p ringmail -p ringmail-loadgen --bin ringmail --bin ringmail-loadgen
BIN=target/release
W=$(mktemp -d /var/tmp/ringmail-compare.XXXXXX)
chmod 755 "$W"
USERS=${USERS:-100}
cleanup() { kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$W"; }
trap cleanup EXIT

# Postfix smtp-sink: accepts and discards.
smtp-sink -u nobody 127.0.0.1:40025 1000 &

# ringmail, embedded defaults on other ports.
for i in $(seq 0 $((USERS - 1))); do
  $BIN/ringmail user add "bench$i@example.org" --password bench --data "$W/ringmail" >/dev/null
done
RUST_LOG=warn $BIN/ringmail serve --data "$W/ringmail" --smtp 127.0.0.1:40125 --lmtp 127.0.0.1:40124 \
  --submission off --smtps off --imap off --imaps off --pop3 off --pop3s off --metrics off &

# Dovecot LMTP, Maildir, fsync always.
mkdir -p "$W/dv/run" "$W/dv/mail" && chown -R nobody "$W/dv/mail"
cat > "$W/dv/dovecot.conf" <<CONF
protocols = lmtp
listen = 127.0.0.1
base_dir = $W/dv/run
state_dir = $W/dv/run
log_path = $W/dv/log
ssl = no
mail_location = maildir:$W/dv/mail/%u
mail_fsync = always
first_valid_uid = 1
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 40224
  }
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$W/dv/mail/%u allow_all_users=yes
}
passdb {
  driver = static
  args = nopassword=y
}
CONF
dovecot -F -c "$W/dv/dovecot.conf" &
sleep 3

run() { # LABEL WORKLOAD PORT
  $BIN/ringmail-loadgen "$2" --target "127.0.0.1:$3" --connections "$CONNS" --duration "$SECS" --size 4096 \
    --users "bench%d@example.org:0-$((USERS - 1))" --report "$W/$1.json" 2>/dev/null >/dev/null
  python3 benches/loadgen_row.py "$W/$1.json" "$1" deliver
}
SINK=$(run smtp-sink smtp 40025)
RING=$(run ringmail-smtp smtp 40125)
RLMTP=$(run ringmail-lmtp lmtp 40124)
DOVE=$(run dovecot-lmtp lmtp 40224)

rate() { echo "$1" | cut -f2; }
echo "| server | messages/s | vs smtp-sink | vs Dovecot LMTP | p50 ms | p99 ms | delivered | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for row in "$SINK" "$RING" "$RLMTP" "$DOVE"; do
  IFS=$'\t' read -r name r p50 p99 n err <<<"$row"
  vs_sink=$(python3 -c "print(f'{$r/max($(rate "$SINK"),1):.2f}×')")
  vs_dove=$(python3 -c "print(f'{$r/max($(rate "$DOVE"),1):.1f}×')")
  echo "| $name | $r | $vs_sink | $vs_dove | $p50 | $p99 | $n | $err |"
done
echo
echo "Machine: $(nproc) cores; $USERS recipient accounts, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $CONNS connections, ~4 KiB messages, $SECS s per server, $(date -u +%F)."
