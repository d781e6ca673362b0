#!/usr/bin/env bash
# IMAP commands: ringmail vs Dovecot IMAP (sdbox, high-performance login mode), on loopback,
# measured in one run by the same client (ringmail-loadgen imap), at 10 and then 100
# connections. Each account's INBOX is first filled to 50 messages of ~4 KiB by IMAP APPEND
# (--prefill, the same path on both servers); each connection then logs in (LOGIN without
# TLS, allowed on loopback for the run), SELECTs INBOX and sends 1,000 commands drawn from
# the mix below (random UIDs) before logging out and moving to its next account. Latency is
# from sending a command to its tagged completion. Each run first warms up unmeasured for
# WARMUP seconds (the first logins of 100 connections at once take seconds on Dovecot,
# which forks an imap process per session). The server's CPU time (benches/tree_cpu.py,
# Dovecot's exited workers included) is read at the end of the warm-up and after the run.
# Prints Markdown tables.
#
#   bash benches/imap-compare.sh [SECONDS]        (default 10 s per server and load)
#
# Environment: USERS (100), PER (messages per account, 50), SIZE (4096), COMMANDS (per
# login, 1000), MIX (the --imap-mix), LOADS ("10 100"), WARMUP (10), OUT (a directory to
# keep the JSON reports in).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
USERS=${USERS:-100}
PER=${PER:-50}
SIZE=${SIZE:-4096}
COMMANDS=${COMMANDS:-1000}
LOADS=${LOADS:-10 100}
WARMUP=${WARMUP:-10}
OUT=${OUT:-}
MIX=${MIX:-fetch-flags:30,fetch-body:30,search-unseen:10,search-subject:10,store:10,noop:10}
if [ ! -x /usr/lib/dovecot/imap ] || [ ! -x /usr/lib/dovecot/imap-login ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq dovecot-core dovecot-imapd >/dev/null
fi
cargo build --release -q -p ringmail -p ringmail-loadgen --bin ringmail --bin ringmail-loadgen
BIN=target/release
W=$(mktemp -d /var/tmp/ringmail-imap.XXXXXX)
chmod 755 "$W"
cleanup() { kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$W"; }
trap cleanup EXIT
RING_PORT=41143
DOVE_PORT=41243

wait_port() { # PORT: until something answers there (30 s at most)
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  exit 1
}

# ringmail: IMAP only.
for i in $(seq 0 $((USERS - 1))); do
  $BIN/ringmail user add "bench$i@example.org" --password bench --data "$W/ringmail" >/dev/null
done
printf '[auth]\ndanger_plaintext_without_tls = true\n' > "$W/ringmail.toml"
RUST_LOG=warn $BIN/ringmail serve --config "$W/ringmail.toml" --data "$W/ringmail" \
  --imap "127.0.0.1:$RING_PORT" --smtp off --submission off --smtps off --lmtp off --imaps off \
  --pop3 off --pop3s off --metrics off &
RING_PID=$!

# Dovecot: sdbox; imap-login in high-performance mode (service_count = 0: long-lived login
# processes, one per core, each serving many clients); static passdb, plaintext allowed.
mkdir -p "$W/dv/run" "$W/dv/mail" && chown -R nobody "$W/dv/mail"
cat > "$W/dv/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $W/dv/run
state_dir = $W/dv/run
log_path = $W/dv/log
ssl = no
disable_plaintext_auth = no
mail_location = sdbox:$W/dv/mail/%u
first_valid_uid = 1
default_process_limit = 1000
default_client_limit = 10000
mail_max_userip_connections = 1000
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVE_PORT
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = $(nproc)
  vsz_limit = 1G
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
wait_port $RING_PORT
wait_port $DOVE_PORT

LG=($BIN/ringmail-loadgen imap --users "bench%d@example.org:0-$((USERS - 1))" --password bench
  --size "$SIZE" --imap-mix "$MIX" --commands-per-login "$COMMANDS")
for s in "ringmail $RING_PORT" "dovecot $DOVE_PORT"; do
  set -- $s
  "${LG[@]}" --target "127.0.0.1:$2" --connections 20 --duration 0 --prefill "$PER" \
    --report "$W/$1-prefill.json" 2>&1 >/dev/null | { grep '^prefill' || true; } | sed "s/^/$1 /" >&2
done
sleep 2

run() { # LABEL PORT CONNECTIONS SERVER_PID: the row, then the server's CPU µs per command
  "${LG[@]}" --target "127.0.0.1:$2" --connections "$3" --duration "$SECS" --warmup "$WARMUP" \
    --report "$W/$1-$3.json" 2>/dev/null >/dev/null &
  local lg=$! before after row
  sleep "$WARMUP"
  before=$(python3 benches/tree_cpu.py "$4")
  wait $lg
  after=$(python3 benches/tree_cpu.py "$4")
  if [ -n "$OUT" ]; then mkdir -p "$OUT" && cp "$W/$1-$3.json" "$OUT/"; fi
  row=$(python3 benches/loadgen_row.py "$W/$1-$3.json" "$1" all)
  printf '%s\t%s\n' "$row" "$(python3 -c "n=int('$row'.split()[4]); print(f'{($after-$before)*1e6/max(n,1):.1f}')")"
}
echo "| server | connections | commands/s | vs Dovecot | p50 ms | p99 ms | commands | errors | server CPU µs/command | commands per server CPU-second vs Dovecot |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $LOADS; do
  RING=$(run ringmail $RING_PORT "$c" $RING_PID)
  DOVE=$(run dovecot $DOVE_PORT "$c" $DOVE_PID)
  dr=$(echo "$DOVE" | cut -f2)
  dc=$(echo "$DOVE" | cut -f7)
  for row in "$RING" "$DOVE"; do
    IFS=$'\t' read -r name r p50 p99 n err cpu <<<"$row"
    vs=$(python3 -c "print(f'{$r/max($dr,1):.2f}×')")
    eff=$(python3 -c "print(f'{$dc/max($cpu,0.001):.2f}×')")
    echo "| $name | $c | $r | $vs | $p50 | $p99 | $n | $err | $cpu | $eff |"
  done
done
echo
echo "Per command (p50 / p99 ms; logins, SELECTs and LOGOUTs are not in the rows above):"
echo
python3 - "$W" $LOADS <<'PY'
import json, sys
w, loads = sys.argv[1], sys.argv[2:]
runs = [(s, c) for c in loads for s in ("ringmail", "dovecot")]
reports = {r: json.load(open(f"{w}/{r[0]}-{r[1]}.json")) for r in runs}
cmds = ["login", "select", "fetch-flags", "fetch-body", "search-unseen", "search-subject", "store", "noop"]
print("| command | " + " | ".join(f"{s} ×{c}" for s, c in runs) + " |")
print("|---|" + "---:|" * len(runs))
for k in cmds:
    cells = []
    for r in runs:
        st = reports[r]["commands"].get(k)
        cells.append(f"{st['p50_ms']:.2f} / {st['p99_ms']:.2f}" if st else "–")
    if any(c != "–" for c in cells):
        print(f"| {k} | " + " | ".join(cells) + " |")
errs = {f"{s} ×{c}": reports[(s, c)]["errors"] for s, c in runs if reports[(s, c)]["errors"]}
if errs:
    print("\nErrors:", json.dumps(errs))
PY
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(dovecot --version | cut -d' ' -f1) (sdbox); $USERS accounts of $PER messages of ~$SIZE B; mix $MIX; $COMMANDS commands per login; $WARMUP s warm-up then $SECS s measured per server and load, $(date -u +%F)."
