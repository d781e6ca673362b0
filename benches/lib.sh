# Shared parts of the comparison scripts (smtp-compare.sh, pop3-compare.sh, imap-compare.sh,
# compare.sh); sourced, not run. Peers from Debian, the release build, a work directory
# cleaned up on exit or Ctrl-C with every process the script started, ringmail and Dovecot
# started on loopback, port waiting, loadgen runs with the server's CPU time, the tables.
#
# Environment understood by every script:
#   PORT_OFFSET  added to every port (default 0: ports 20025-21244, all below the
#                ephemeral range, where a client's socket could hold a server's port)
#   RM_BUILT=1   skip `cargo build` (compare.sh builds once, then sets it)
#   RM_SECTION=1 print no machine line (compare.sh prints the machine once)
#   BIN          where the binaries are (target/release)
# shellcheck shell=bash

RM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$RM_ROOT" || exit 1
BIN=${BIN:-target/release}
PORT_OFFSET=${PORT_OFFSET:-0}

# Installs the peers from Debian when one of the given programs is missing.
rm_need_peers() { # PROGRAM...
  local p
  for p in "$@"; do
    if ! command -v "$p" >/dev/null && [ ! -x "$p" ]; then
      echo "installing the peers from Debian (Postfix, Dovecot) ..." >&2
      export DEBIAN_FRONTEND=noninteractive
      # Postfix is only needed for smtp-sink: no mail system configured, nothing started.
      echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
      apt-get update -qq
      apt-get install -y -qq postfix dovecot-core dovecot-lmtpd dovecot-pop3d dovecot-imapd >/dev/null
      return
    fi
  done
}

# The release binaries, once per run.
rm_build() {
  if [ "${RM_BUILT:-0}" != 1 ]; then
    cargo build --release -q -p ringmail -p ringmail-loadgen --bin ringmail --bin ringmail-loadgen
    export RM_BUILT=1
  fi
}

# Every live descendant of PID (children first found, then theirs).
rm_descendants() { # PID
  local c
  for c in $(pgrep -P "$1"); do
    echo "$c"
    rm_descendants "$c"
  done
}

# Stops every process this script started (servers, clients, Dovecot's workers), then
# removes the work directory. Runs on exit, Ctrl-C and TERM.
rm_cleanup() {
  trap - EXIT INT TERM
  local pids alive p
  pids=$(rm_descendants $$)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive=
      for p in $pids; do
        if kill -0 "$p" 2>/dev/null; then alive="$alive $p"; fi
      done
      [ -z "$alive" ] && break
      sleep 0.1
    done
    if [ -n "$alive" ]; then
      # shellcheck disable=SC2086
      kill -KILL $alive 2>/dev/null || true
    fi
  fi
  if [ -n "${W:-}" ] && [ -d "$W" ]; then rm -rf "$W"; fi
}

# A fresh work directory in W (on the disk: /var/tmp, not a tmpfs), and the traps.
rm_workdir() { # NAME
  W=$(mktemp -d "/var/tmp/ringmail-$1.XXXXXX")
  chmod 755 "$W"
  trap rm_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

rm_port_free() { # PORT: fails when something already listens there (another run?)
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "127.0.0.1:$1 is in use: another benchmark running? (set PORT_OFFSET)" >&2
    exit 1
  fi
}

rm_wait_port() { # PORT: until something answers there (30 s at most)
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  exit 1
}

# ringmail in DIR with USERS accounts bench0..bench{USERS-1}@example.org (password bench,
# plaintext login allowed for the run), serving only the listeners given as NAME=IP:PORT
# (smtp, lmtp, imap, pop3, ...). Sets RING_PID.
rm_ringmail() { # DIR USERS LISTENER=ADDR...
  local dir=$1 users=$2 i l
  shift 2
  for i in $(seq 0 $((users - 1))); do
    "$BIN/ringmail" user add "bench$i@example.org" --password bench --data "$dir" >/dev/null
  done
  # RING_CONFIG: top-level settings to add (they must come before the first [section]).
  printf '%s\n[auth]\ndanger_plaintext_without_tls = true\n' "${RING_CONFIG:-}" >"$dir.toml"
  local -A on=()
  for l in "$@"; do
    on[${l%%=*}]=${l#*=}
    rm_port_free "${l##*:}"
  done
  local args=()
  for l in smtp submission smtps lmtp imap imaps pop3 pop3s metrics; do
    args+=("--$l" "${on[$l]:-off}")
  done
  # The default log level (info: a line per connection, login and delivery), to a file, as
  # a server runs; RING_LOG=warn for a run without them.
  RUST_LOG=${RING_LOG:-info} "$BIN/ringmail" serve --config "$dir.toml" --data "$dir" "${args[@]}" 2>"$dir.log" &
  # shellcheck disable=SC2034 # for the caller
  RING_PID=$!
  for l in "$@"; do rm_wait_port "${l##*:}"; done
}

# A Dovecot instance in W/NAME with mail in FORMAT (maildir, sdbox) and the given listeners
# (lmtp=PORT, pop3=PORT, imap=PORT); static userdb (every user exists), static password
# "bench", plaintext allowed, no TLS. Settings read on stdin are appended (or pass
# /dev/null). Sets DOVE_PID.
rm_dovecot() { # NAME FORMAT LISTENER=PORT... <EXTRA_SETTINGS
  local d="$W/$1" fmt=$2 l protos=()
  shift 2
  for l in "$@"; do
    protos+=("${l%%=*}")
    rm_port_free "${l#*=}"
  done
  mkdir -p "$d/run" "$d/mail" && chown -R nobody "$d/mail"
  {
    cat <<CONF
protocols = ${protos[*]}
listen = 127.0.0.1
base_dir = $d/run
state_dir = $d/run
log_path = $d/log
ssl = no
disable_plaintext_auth = no
mail_location = $fmt:$d/mail/%u
first_valid_uid = 1
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$d/mail/%u allow_all_users=yes
}
passdb {
  driver = static
  args = password=bench
}
CONF
    for l in "$@"; do
      case ${l%%=*} in
      lmtp) printf 'service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = %s\n  }\n}\n' "${l#*=}" ;;
      pop3) printf 'service pop3-login {\n  inet_listener pop3 {\n    address = 127.0.0.1\n    port = %s\n  }\n  inet_listener pop3s {\n    port = 0\n  }\n}\n' "${l#*=}" ;;
      imap) printf 'service imap-login {\n  inet_listener imap {\n    address = 127.0.0.1\n    port = %s\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n' "${l#*=}" ;;
      esac
    done
    cat
  } >"$d/dovecot.conf"
  dovecot -F -c "$d/dovecot.conf" &
  # shellcheck disable=SC2034 # for the caller
  DOVE_PID=$!
  for l in "$@"; do rm_wait_port "${l#*=}"; done
}

# One measured loadgen run against a server: WARMUP s unmeasured, then the loadgen's
# --duration; the server's CPU time (benches/tree_cpu.py, its exited workers included) is
# read at the end of the warm-up and after the run, and so is the client's (benches/
# cpu_run.py). Prints one row for benches/table.py: label, key, rate, p50 ms, p99 ms, count,
# errors, server and client CPU µs per counted request. The JSON report stays in
# W/LABEL-KEY.json.
rm_run() { # LABEL KEY SERVER_PID[,PID...] REPORT_COMMAND LOADGEN_ARGS...
  local label=$1 key=$2 pid=$3 cmd=$4 lg pids
  shift 4
  # Several servers (a cluster's nodes): their CPU together.
  IFS=, read -r -a pids <<<"$pid"
  local out="$W/$label-$key" nice=()
  echo "  $label ${key/#-/}: ${WARMUP:=0} s warm-up, then measured" >&2
  python3 benches/cpu_run.py "$out.client-cpu" \
    "$BIN/ringmail-loadgen" "$@" ${LOADGEN_ARGS:-} --warmup "$WARMUP" --report "$out.json" >/dev/null 2>"$out.log" &
  lg=$!
  # The first readings are taken by a reader started now and niced: started once the
  # machine is saturated, it would read seconds late.
  if [ "$(id -u)" = 0 ]; then nice=(nice -n -10); fi
  "${nice[@]}" python3 benches/tree_cpu.py --after "$WARMUP" "${pids[@]}" "$lg" |
    awk -v n="${#pids[@]}" '{ s = 0; for (i = 1; i <= n; i++) s += $i; print s, $(n + 1) }' >"$out.before"
  if ! wait "$lg"; then
    echo "ringmail-loadgen failed against $label:" >&2
    tail -5 "$out.log" >&2
    exit 1
  fi
  local before client_before
  read -r before client_before <"$out.before"
  python3 benches/loadgen_row.py "$out.json" "$label" "$key" "$cmd" "$before" \
    "$(python3 benches/tree_cpu.py "${pids[@]}" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }')" \
    "$client_before" "$(cat "$out.client-cpu")"
}

# One line: the machine and the data directory's filesystem.
rm_machine() {
  local fs
  fs=$(df -T /var/tmp | awk 'NR == 2 { print $2 " on " $1 }')
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "Linux $(uname -r), data in /var/tmp ($fs)"
}

# The machine line, unless compare.sh prints it once for the whole run.
rm_machine_line() {
  if [ "${RM_SECTION:-0}" != 1 ]; then
    echo
    echo "Machine: $(rm_machine); $(date -u '+%F %H:%M') UTC."
  fi
}
