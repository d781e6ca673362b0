#!/usr/bin/env bash
# POP3 retrievals: ringmail vs Dovecot POP3 (Maildir, and sdbox unless FORMATS says
# otherwise), on loopback, measured in one run by the same client (ringmail-loadgen pop3:
# 50 connections, each with its own account of 20 messages of ~4 KiB, filled through each
# server's own LMTP; 1,000 random RETRs per login). Both servers accept USER/PASS without
# TLS for the run. Each run warms up WARMUP s unmeasured; the server's CPU time
# (benches/tree_cpu.py, Dovecot's exited workers included) is read over the measured window.
# Prints a Markdown table.
#
#   bash benches/pop3-compare.sh [SECONDS]        (default 10 s per server)
#
# Environment: CONNS (50), PER (20), FORMATS ("maildir sdbox"), WARMUP (2), PORT_OFFSET (0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CONNS=${CONNS:-50}
PER=${PER:-20}
FORMATS=${FORMATS:-maildir sdbox}
WARMUP=${WARMUP:-2}
rm_need_peers dovecot /usr/lib/dovecot/pop3 /usr/lib/dovecot/lmtp
rm_build
rm_workdir pop3

RING_LMTP=$((21124 + PORT_OFFSET))
RING_POP3=$((21110 + PORT_OFFSET))
rm_ringmail "$W/ringmail" "$CONNS" lmtp=127.0.0.1:$RING_LMTP pop3=127.0.0.1:$RING_POP3
SERVERS=("ringmail-pop3 $RING_POP3 $RING_LMTP $RING_PID")

# Dovecot: LMTP to fill the mailboxes, POP3 to read them; one instance per format.
i=0
for fmt in $FORMATS; do
  lmtp=$((21224 + PORT_OFFSET + i))
  pop3=$((21210 + PORT_OFFSET + 2 * i))
  rm_dovecot "dovecot-$fmt" "$fmt" lmtp=$lmtp pop3=$pop3 <<<"pop3_uidl_format = %08Xu%08Xv"
  SERVERS+=("dovecot-$fmt $pop3 $lmtp $DOVE_PID")
  i=$((i + 1))
done

lmtp_ports=()
for s in "${SERVERS[@]}"; do
  read -r _ _ lmtp _ <<<"$s"
  lmtp_ports+=("$lmtp")
done
python3 - "$CONNS" "$PER" "${lmtp_ports[@]}" <<'PY'
import random
import smtplib
import sys

conns, per = int(sys.argv[1]), int(sys.argv[2])
words = "the mail server stores every message durably and fast on disk with checksums".split()
for port in sys.argv[3:]:
    random.seed(1)
    l = smtplib.LMTP("127.0.0.1", int(port))
    for u in range(conns):
        for k in range(per):
            body = " ".join(random.choice(words) for _ in range(600))
            msg = f"From: a@remote.example\r\nTo: bench{u}@example.org\r\nSubject: m{k}\r\n\r\n{body}\r\n"
            l.sendmail("a@remote.example", [f"bench{u}@example.org"], msg.encode())
    l.quit()
PY

for s in "${SERVERS[@]}"; do
  read -r label port _ pid <<<"$s"
  rm_run "$label" - "$pid" retr pop3 --target "127.0.0.1:$port" --connections "$CONNS" --duration "$SECS" \
    --password bench --users "bench%d@example.org:0-$((CONNS - 1))" --retrs-per-login 1000
done >"$W/rows.tsv"
vs=()
for fmt in $FORMATS; do vs+=(--vs "dovecot-$fmt" --cpu-vs "dovecot-$fmt"); done
python3 benches/table.py rows "$W/rows.tsv" --unit retrievals --per retrieval --count retrievals "${vs[@]}"
echo
echo "Settings: $CONNS connections, one account each with $PER messages of ~4 KiB (filled through each server's LMTP), 1,000 random RETRs per login; Dovecot $(dovecot --version | cut -d' ' -f1) POP3 (${FORMATS// /, }); $WARMUP s warm-up then $SECS s measured per server."
rm_machine_line
