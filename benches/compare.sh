#!/usr/bin/env bash
# ringmail against its peers from Debian, in one run on loopback, by the same client
# (ringmail-loadgen):
#   SMTP delivery   ringmail SMTP and LMTP vs Postfix's smtp-sink vs Dovecot LMTP (Maildir)
#   POP3 retrieval  ringmail vs Dovecot POP3 on Maildir and on sdbox
#   IMAP commands   ringmail vs Dovecot IMAP on sdbox and on Maildir, 10 and 100 connections
# It installs the peers if missing, builds the release binaries once, runs
# benches/smtp-compare.sh, pop3-compare.sh and imap-compare.sh (which share benches/lib.sh),
# and prints one dated Markdown section: the machine, the commit, the tables (ratios against
# the peers measured in this run, p50/p99, server CPU per request). With --write it also
# appends that section to docs/benchmarks.md. Every server and client it starts is stopped
# on exit, Ctrl-C or TERM.
#
#   bash benches/compare.sh [--write] [SECONDS]   (default 8 s measured per server and load;
#                                                  3.5 minutes on 2 cores, build cached)
#
# Environment: PORT_OFFSET (5000: ports 25025-26244, below the ephemeral range),
# IMAP_WARMUP (8), and each script's own settings (CONNS, USERS, ...; see their headers).
set -euo pipefail
PORT_OFFSET=${PORT_OFFSET:-5000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
WRITE=0
SECS=8
for a in "$@"; do
  case $a in
  --write) WRITE=1 ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  '' | *[!0-9]*)
    echo "usage: bash benches/compare.sh [--write] [SECONDS]" >&2
    exit 2
    ;;
  *) SECS=$a ;;
  esac
done
T0=$(date +%s)
STARTED=$(date -u '+%F %H:%M')
LOAD=$(cut -d' ' -f1 /proc/loadavg)
if pgrep -x rustc >/dev/null || pgrep -f 'cargo (build|test|bench|clippy)' >/dev/null; then
  echo "warning: a compiler is running: the figures will not mean much" >&2
fi
rm_need_peers smtp-sink dovecot /usr/lib/dovecot/lmtp /usr/lib/dovecot/pop3 /usr/lib/dovecot/imap \
  /usr/lib/dovecot/imap-login
echo "building the release binaries ..." >&2
rm_build
rm_workdir compare
export RM_SECTION=1 PORT_OFFSET BIN
# Every 2 s: is a compiler running? (Then the figures are disturbed: said in the section.)
(while sleep 2; do if pgrep -x rustc >/dev/null; then echo busy; else echo quiet; fi; done) >"$W/noise" &

part() { # TITLE SCRIPT [VAR=VALUE...]: one comparison, its output kept for the section
  local title=$1 script=$2
  shift 2
  echo "$script ..." >&2
  # In the background and waited for, so that TERM or Ctrl-C reach rm_cleanup at once.
  env "$@" bash "benches/$script" "$SECS" >"$W/$script.md" &
  wait $!
  printf '\n### %s\n\n' "$title" >>"$W/parts.md"
  cat "$W/$script.md" >>"$W/parts.md"
}
part "SMTP delivery: ringmail vs Postfix smtp-sink and Dovecot LMTP" smtp-compare.sh
part "POP3 retrieval: ringmail vs Dovecot POP3 (Maildir, sdbox)" pop3-compare.sh FORMATS="maildir sdbox"
part "IMAP commands: ringmail vs Dovecot IMAP (sdbox, Maildir)" imap-compare.sh FORMATS="sdbox maildir" \
  LOADS="10 100" WARMUP="${IMAP_WARMUP:-8}"

took=$(($(date +%s) - T0))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain -- engine frontends loadgen benches Cargo.toml Cargo.lock 2>/dev/null | wc -l)
if [ "$dirty" -gt 0 ]; then
  commit="$commit, built from a working tree with $dirty changed files under engine/, frontends/, loadgen/, benches/"
fi
{
  echo "## Comparison run of $STARTED UTC"
  echo
  echo "\`bash benches/compare.sh\` ($((took / 60)) min $((took % 60)) s, build included): ringmail"
  echo "and its peers from Debian, each started on loopback in this run and driven one after"
  echo "the other by the same client, \`ringmail-loadgen\`, which shares the cores with the server."
  echo "Each ratio compares with a peer measured in the same run. Server CPU is the server's"
  echo "process tree's user + system time over the measured window (Dovecot's exited workers"
  echo "included) per request; client CPU is the generator's own."
  echo
  echo "- Machine: $(rm_machine); load average $LOAD when the run started."
  busy=$(grep -c busy "$W/noise" || true)
  if [ "$busy" -gt 0 ]; then
    echo "- **Disturbed:** a compiler ran during $busy of $(wc -l <"$W/noise") two-second samples of this run."
  fi
  echo "- Commit: $commit."
  echo "- Peers: Dovecot $(dovecot --version | cut -d' ' -f1), Postfix $(dpkg-query -W -f '${Version}' postfix 2>/dev/null) (\`smtp-sink\`), from Debian $(cat /etc/debian_version 2>/dev/null)."
  cat "$W/parts.md"
} >"$W/section.md"
cat "$W/section.md"
if [ "$WRITE" = 1 ]; then
  { echo; cat "$W/section.md"; } >>docs/benchmarks.md
  echo "appended to docs/benchmarks.md" >&2
fi
