#!/usr/bin/env bash
# One big mailbox: ringmail against Dovecot IMAP (sdbox), each filled by the same client
# (benches/big_mailbox.py, pipelined APPEND with LITERAL+) to each size in turn; after each
# size, the commands whose cost must grow no faster than the mailbox are timed (median of
# REPEAT runs): SELECT, STORE 1:* +FLAGS.SILENT (\Seen), UID SEARCH UNSEEN, SEARCH SUBJECT,
# FETCH 1:* (FLAGS), each with the server's CPU time for it (all of ringmail's threads; for
# Dovecot its imap process). Dovecot runs with its default fsync (optimized: neither APPEND
# nor a flag change waits for the disk). Prints a Markdown table.
#
#   bash benches/big-mailbox.sh [SIZES]        (default 10000,50000,200000)
#
# Environment: REPEAT (5), PORT_OFFSET (0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
SIZES=${1:-10000,50000,200000}
REPEAT=${REPEAT:-5}
rm_need_peers dovecot /usr/lib/dovecot/imap /usr/lib/dovecot/imap-login
rm_build
rm_workdir bigbox

RING_PORT=$((21163 + PORT_OFFSET))
DOVE_PORT=$((21263 + PORT_OFFSET))
# Every message compressed as it is stored: the default defers that to a background thread,
# which would then work through the fill's backlog (and write it back through the shards)
# while the commands are measured.
RING_CONFIG="deferred_compression_mib = 0" rm_ringmail "$W/ringmail" 1 imap=127.0.0.1:$RING_PORT
CPU_OF="serve --config $W/ringmail.toml" \
  python3 benches/big_mailbox.py "$RING_PORT" bench0@example.org bench "$SIZES" "$REPEAT" \
  | sed 's/^/ringmail /' >"$W/rows"

rm_dovecot dovecot-sdbox sdbox imap=$DOVE_PORT </dev/null
CPU_OF="^dovecot/imap$" CPU_PARENT=$DOVE_PID \
  python3 benches/big_mailbox.py "$DOVE_PORT" bench0@example.org bench "$SIZES" "$REPEAT" \
  | sed 's/^/dovecot-sdbox /' >>"$W/rows"

python3 - "$W/rows" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    server, js = line.split(" ", 1)
    r = json.loads(js)
    rows[(server, r["size"])] = r
sizes = sorted({s for _, s in rows})
cmds = ["select", "store", "search_unseen", "search_subject", "fetch_flags"]
def cpu(v):
    return "–" if v is None else f"{v:.2f}"
print("| messages | command | ringmail ms | server CPU ms | dovecot-sdbox ms | server CPU ms | ringmail vs dovecot |")
print("|---:|---|---:|---:|---:|---:|---:|")
for n in sizes:
    r, d = rows.get(("ringmail", n)), rows.get(("dovecot-sdbox", n))
    for c in cmds:
        a, b = r[c], d[c]
        print(f"| {n} | {c} | {a:.2f} | {cpu(r[c + '_cpu'])} | {b:.2f} | {cpu(d[c + '_cpu'])} | {a / b:.2f}× |")
    print(f"| {n} | fill: messages/s (CPU µs each) | {r['fill_per_s']} | {r['fill_cpu_us']} | {d['fill_per_s']} | {d['fill_cpu_us']} | {r['fill_per_s'] / d['fill_per_s']:.2f}× |")
PY
echo
echo "Settings: one connection, ~2.3 KiB messages, median of $REPEAT runs per size; Dovecot $(dovecot --version | cut -d' ' -f1) (sdbox, mail_fsync = optimized); ringmail's STORE is durable before its OK. ringmail compresses each message as it stores it (deferred_compression_mib = 0), so no backlog is being worked through while the commands run. Server CPU: median per command from /proc schedstat (ringmail: all its threads; Dovecot: its imap process); for the fill, per message."
rm_machine_line
