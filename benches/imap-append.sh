#!/usr/bin/env bash
# IMAP APPEND as Python's imaplib sends it: the literal in one write and its closing CRLF
# in a second, with Nagle's algorithm on (the stock client's default). A server that waits
# for more of a command before acknowledging what it has makes that second write wait for
# the delayed-ACK timer (40 ms on Linux). ringmail against Dovecot IMAP (sdbox), one client,
# APPENDs of a ~4 KiB message one after the other; prints a Markdown table of the time per
# APPEND (median, p99) and the ratio to Dovecot's median.
#
#   bash benches/imap-append.sh [COUNT]        (default 300 APPENDs per server)
#
# Environment: SIZE (4096), PORT_OFFSET (0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
COUNT=${1:-300}
SIZE=${SIZE:-4096}
rm_need_peers dovecot /usr/lib/dovecot/imap /usr/lib/dovecot/imap-login
rm_build
rm_workdir append

RING_PORT=$((21153 + PORT_OFFSET))
DOVE_PORT=$((21253 + PORT_OFFSET))
rm_ringmail "$W/ringmail" 1 imap=127.0.0.1:$RING_PORT
rm_dovecot dovecot-sdbox sdbox imap=$DOVE_PORT </dev/null

python3 - "$COUNT" "$SIZE" "$RING_PORT" "$DOVE_PORT" <<'PY'
import imaplib, statistics, sys, time
count, size, ring, dove = (int(a) for a in sys.argv[1:])
msg = b"From: a@example.org\r\nSubject: append\r\n\r\n"
msg += (b"x" * 70 + b"\r\n") * (size // 72)
rows = []
for name, port in (("ringmail", ring), ("dovecot-sdbox", dove)):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("bench0@example.org", "bench")
    c.append("INBOX", None, None, msg)  # warm up: first use of the mailbox
    times = []
    for _ in range(count):
        t = time.perf_counter()
        typ, _ = c.append("INBOX", None, None, msg)
        times.append((time.perf_counter() - t) * 1000)
        assert typ == "OK", typ
    c.logout()
    times.sort()
    rows.append((name, statistics.median(times), times[int(len(times) * 0.99) - 1]))
base = rows[1][1]
print("| server | APPENDs | median ms | p99 ms | median vs dovecot-sdbox |")
print("|---|---:|---:|---:|---:|")
for name, med, p99 in rows:
    print(f"| {name} | {count} | {med:.2f} | {p99:.2f} | {med / base:.2f}× |")
PY
echo
echo "Settings: Python $(python3 -c 'import sys; print(sys.version.split()[0])') imaplib (literal and CRLF in two writes, Nagle on), ~$SIZE B messages, one connection; Dovecot $(dovecot --version | cut -d' ' -f1) (sdbox, fsync default)."
rm_machine_line
