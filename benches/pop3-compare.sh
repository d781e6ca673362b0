#!/usr/bin/env bash
# POP3 retrievals: ringmail vs Dovecot POP3 (Maildir), on loopback, measured in one run by
# the same client (ringmail-loadgen pop3: 50 connections, each with its own accounts of 20
# messages of ~4 KiB, 1,000 random RETRs per login). Both servers accept USER/PASS without
# TLS for the run. Prints a Markdown table.
#
#   bash benches/pop3-compare.sh [SECONDS]        (default 10 s per server)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${CONNS:-50}
PER=${PER:-20}
if [ ! -x /usr/lib/dovecot/pop3 ] || [ ! -x /usr/lib/dovecot/lmtp ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq dovecot-core dovecot-lmtpd dovecot-pop3d >/dev/null
fi
cargo build --release -q -p ringmail -p ringmail-loadgen --bin ringmail --bin ringmail-loadgen
BIN=target/release
W=$(mktemp -d /var/tmp/ringmail-pop3.XXXXXX)
chmod 755 "$W"
cleanup() { kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$W"; }
trap cleanup EXIT

# ringmail
for i in $(seq 0 $((CONNS - 1))); do
  $BIN/ringmail user add "bench$i@example.org" --password bench --data "$W/ringmail" >/dev/null
done
printf '[auth]\ndanger_plaintext_without_tls = true\n' > "$W/ringmail.toml"
RUST_LOG=warn $BIN/ringmail serve --config "$W/ringmail.toml" --data "$W/ringmail" --lmtp 127.0.0.1:41124 \
  --pop3 127.0.0.1:41110 --smtp off --submission off --smtps off --pop3s off --imap off --imaps off --metrics off &
RING_PID=$!

# Dovecot: LMTP to fill the maildirs, POP3 to read them.
mkdir -p "$W/dv/run" "$W/dv/mail" && chown -R nobody "$W/dv/mail"
cat > "$W/dv/dovecot.conf" <<CONF
protocols = lmtp pop3
listen = 127.0.0.1
base_dir = $W/dv/run
state_dir = $W/dv/run
log_path = $W/dv/log
ssl = no
disable_plaintext_auth = no
mail_location = maildir:$W/dv/mail/%u
first_valid_uid = 1
pop3_uidl_format = %08Xu%08Xv
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 41224
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = 41210
  }
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$W/dv/mail/%u allow_all_users=yes
}
passdb {
  driver = static
  args = password=bench
}
CONF
dovecot -F -c "$W/dv/dovecot.conf" &
DOVE_PID=$!
sleep 3

python3 - "$CONNS" "$PER" <<'PY'
import smtplib, sys, random
conns, per = int(sys.argv[1]), int(sys.argv[2])
random.seed(1)
words = "the mail server stores every message durably and fast on disk with checksums".split()
for port in (41124, 41224):
    l = smtplib.LMTP("127.0.0.1", port)
    for u in range(conns):
        for k in range(per):
            body = " ".join(random.choice(words) for _ in range(600))
            msg = f"From: a@remote.example\r\nTo: bench{u}@example.org\r\nSubject: m{k}\r\n\r\n{body}\r\n"
            l.sendmail("a@remote.example", [f"bench{u}@example.org"], msg.encode())
    l.quit()
PY

run() { # LABEL PORT SERVER_PID: the row, then the server's CPU µs per retrieval
  local before after
  before=$(python3 benches/tree_cpu.py "$3")
  $BIN/ringmail-loadgen pop3 --target "127.0.0.1:$2" --connections "$CONNS" --duration "$SECS" --password bench \
    --users "bench%d@example.org:0-$((CONNS - 1))" --retrs-per-login 1000 --report "$W/$1.json" 2>/dev/null >/dev/null
  after=$(python3 benches/tree_cpu.py "$3")
  local row
  row=$(python3 benches/loadgen_row.py "$W/$1.json" "$1" retr)
  printf '%s\t%s\n' "$row" "$(python3 -c "n=int('$row'.split()[4]); print(f'{($after-$before)*1e6/max(n,1):.1f}')")"
}
RING=$(run ringmail-pop3 41110 "$RING_PID")
DOVE=$(run dovecot-pop3 41210 "$DOVE_PID")
rate() { echo "$1" | cut -f2; }
cpu() { echo "$1" | cut -f7; }
echo "| server | retrievals/s | vs Dovecot | p50 ms | p99 ms | retrievals | errors | server CPU µs/retrieval | retrievals per server CPU-second vs Dovecot |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "$RING" "$DOVE"; do
  IFS=$'\t' read -r name r p50 p99 n err c <<<"$row"
  vs=$(python3 -c "print(f'{$r/max($(rate "$DOVE"),1):.1f}×')")
  eff=$(python3 -c "print(f'{$(cpu "$DOVE")/max($c,0.001):.1f}×')")
  echo "| $name | $r | $vs | $p50 | $p99 | $n | $err | $c | $eff |"
done
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $CONNS connections (one account each, $PER messages of ~4 KiB), $SECS s per server, $(date -u +%F)."
