#!/usr/bin/env bash
# Starts a whole ringmail cluster on loopback: ETCD_MEMBERS etcd members (Debian's
# etcd-server), S3_NODES Garage nodes (the S3 server ringmail is tested against; AGPL, so
# only ever run as a separate process) with a bucket and a key for ringmail, and NODES
# ringmail nodes on 127.0.0.1, 127.0.0.2, ... with users bench1..bench100@example.org
# (password "bench"). Prints one NAME=VALUE line per port and PID, and records every PID it
# started in $CLUSTER_DIR/pids, which benches/cluster-down.sh reads: it stops exactly those.
#
#   bash benches/cluster-up.sh            (3 etcd members, 3 Garage nodes, 3 ringmail nodes)
#   bash benches/cluster-down.sh          (stops them; --wipe also removes $CLUSTER_DIR)
#
# Environment:
#   CLUSTER_DIR   state and data (default /tmp/ringmail-cluster; wiped first)
#   BASE_PORT     first port used (default 23000); the script uses BASE_PORT..BASE_PORT+99
#   ETCD_MEMBERS  1 or 3 (default 3)
#   S3_NODES      1 or 3 (default 3; with 3, every object is stored on all three)
#   NODES         ringmail nodes (default 3; 0: only etcd and S3)
#   PARTITIONS    the cluster's partitions (default 8)
#   USERS         bench users (default 100)
#   LEASE_TTL     seconds of a node's lease (default 5)
#   RINGMAIL      the ringmail binary (default target/release/ringmail, built if missing)
#   GARAGE        the garage binary (default: `garage` on PATH, else ~/.cargo/bin/garage)
#   S3_DATA_DIR   where the Garage nodes keep their data (default: in CLUSTER_DIR); a tmpfs
#                 such as /dev/shm keeps the S3 server's disk work out of a benchmark of
#                 ringmail (cluster-down.sh removes what was made there)
#   SHIP_IN_FLIGHT, SHIP_INTERVAL_MS  the nodes' [cluster] ship_in_flight and
#                 ship_interval_ms (default: ringmail's)
#   NODE_TOP      more top-level settings for every node's configuration file (TOML lines)
#   MAX_CONN_PER_IP  the nodes' [limits] max_connections_per_ip (default 1000: every client
#                 of a local cluster comes from 127.0.0.1)
#   NODE_LOG      the nodes' RUST_LOG (default info)
#   HOST          loopback address for etcd and S3 (default 127.0.0.1)
#
# Output (also written to $CLUSTER_DIR/env):
#   ETCD_ENDPOINTS=http://127.0.0.1:23000,...   ETCD<i>_PID=...  ETCD<i>_CLIENT=... ETCD<i>_PEER=...
#   S3_ENDPOINT=http://127.0.0.1:23030          S3<i>_PID=...    S3<i>_ENDPOINT=...
#   S3_REGION=garage S3_BUCKET=ringmail S3_ACCESS_KEY=... S3_SECRET_KEY=...
#   NODE<i>_PID, NODE<i>_SMTP, _LMTP, _IMAP, _POP3, _METRICS (node i on 127.0.0.<i>),
#   NODE<i>_CLUSTER (its cluster port: other nodes forward deliveries and proxy sessions there)
#   NODE<i>_CONFIG (its configuration file, also for `ringmail cluster status --config`)
set -euo pipefail
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/ringmail-cluster}
BASE_PORT=${BASE_PORT:-23000}
ETCD_MEMBERS=${ETCD_MEMBERS:-3}
S3_NODES=${S3_NODES:-3}
NODES=${NODES:-3}
PARTITIONS=${PARTITIONS:-8}
USERS=${USERS:-100}
LEASE_TTL=${LEASE_TTL:-5}
MAX_CONN_PER_IP=${MAX_CONN_PER_IP:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RINGMAIL=${RINGMAIL:-$ROOT/target/release/ringmail}
HOST=${HOST:-127.0.0.1}
case $HOST in 127.*) ;; *)
  echo "cluster-up.sh: HOST must be a loopback address (127.0.0.0/8)" >&2
  exit 2
  ;;
esac
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
ETCD=${ETCD:-$(command -v etcd || true)}
[ -x "$GARAGE" ] || {
  echo "cluster-up.sh: no garage binary ($GARAGE); install it with: cargo install --locked garage --version 2.5.0" >&2
  exit 3
}
[ -n "$ETCD" ] || {
  echo "cluster-up.sh: no etcd binary; install it with: apt-get install etcd-server" >&2
  exit 3
}

if [ -f "$CLUSTER_DIR/pids" ]; then
  bash "$(dirname "$0")/cluster-down.sh" >/dev/null 2>&1 || true
fi
rm -rf "$CLUSTER_DIR"
mkdir -p "$CLUSTER_DIR"
PIDS=$CLUSTER_DIR/pids
ENV=$CLUSTER_DIR/env
: >"$PIDS"
: >"$ENV"
out() {
  echo "$1"
  echo "$1" >>"$ENV"
}
# Each process gets $CLUSTER_DIR/<name>/start.sh, which starts it (again, after a test or an
# operator stopped it: same data, same ports), records its PID and prints it.
spawn() {
  local name=$1
  shift
  local d=$CLUSTER_DIR/$name
  mkdir -p "$d"
  {
    echo '#!/usr/bin/env bash'
    printf '%q ' "$@"
    echo ">>$(printf '%q' "$d/log") 2>&1 &"
    echo "echo \$! >>$(printf '%q' "$PIDS")"
    echo 'echo $!'
  } >"$d/start.sh"
  bash "$d/start.sh"
}
fail() {
  echo "cluster-up.sh: $*" >&2
  bash "$(dirname "$0")/cluster-down.sh" >/dev/null 2>&1 || true
  exit 1
}

# ---- etcd: members on BASE_PORT+0,2,4 (client) and +1,3,5 (peer)
initial=""
for i in $(seq 1 "$ETCD_MEMBERS"); do
  peer=$((BASE_PORT + 2 * i - 1))
  initial+="${initial:+,}e$i=http://$HOST:$peer"
done
endpoints=""
for i in $(seq 1 "$ETCD_MEMBERS"); do
  client=$((BASE_PORT + 2 * i - 2))
  peer=$((BASE_PORT + 2 * i - 1))
  pid=$(spawn "etcd$i" "$ETCD" --name "e$i" --data-dir "$CLUSTER_DIR/etcd$i/data" \
    --listen-client-urls "http://$HOST:$client" --advertise-client-urls "http://$HOST:$client" \
    --listen-peer-urls "http://$HOST:$peer" --initial-advertise-peer-urls "http://$HOST:$peer" \
    --initial-cluster "$initial" --initial-cluster-state new \
    --initial-cluster-token "ringmail-$BASE_PORT")
  out "ETCD${i}_PID=$pid"
  out "ETCD${i}_CLIENT=http://$HOST:$client"
  out "ETCD${i}_PEER=http://$HOST:$peer"
  endpoints+="${endpoints:+,}http://$HOST:$client"
done
out "ETCD_ENDPOINTS=$endpoints"

# ---- Garage (LMDB metadata, as Garage recommends; no block compression: ringmail's
# message bodies are zstd-compressed already): node i has S3 on BASE_PORT+30+10(i-1), RPC +1, admin +3
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in $(seq 1 "$S3_NODES"); do
  s3=$((BASE_PORT + 30 + 10 * (i - 1)))
  d=$CLUSTER_DIR/s3-$i
  mkdir -p "$d"
  sd=$d
  if [ -n "${S3_DATA_DIR:-}" ]; then
    sd=$S3_DATA_DIR/ringmail-s3-$BASE_PORT-$i
    rm -rf "$sd"
    mkdir -p "$sd"
    echo "$sd" >>"$CLUSTER_DIR/s3-data"
  fi
  cat >"$d/garage.toml" <<EOF
metadata_dir = "$sd/meta"
data_dir = "$sd/data"
db_engine = "lmdb"
compression_level = "none"
replication_factor = $S3_NODES
rpc_bind_addr = "$HOST:$((s3 + 1))"
rpc_public_addr = "$HOST:$((s3 + 1))"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "$HOST:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "$HOST:$((s3 + 3))"
EOF
  pid=$(spawn "s3-$i" "$GARAGE" -c "$d/garage.toml" server)
  out "S3${i}_PID=$pid"
  out "S3${i}_ENDPOINT=http://$HOST:$s3"
done
out "S3_ENDPOINT=http://$HOST:$((BASE_PORT + 30))"

g() { "$GARAGE" -c "$CLUSTER_DIR/s3-1/garage.toml" "$@"; }
# Wait for the first node's RPC, then connect the others to it.
for _ in $(seq 1 100); do
  g status >/dev/null 2>&1 && break
  sleep 0.1
done
g status >/dev/null 2>&1 || fail "garage did not start (see $CLUSTER_DIR/s3-1/log)"
for i in $(seq 2 "$S3_NODES"); do
  id=$("$GARAGE" -c "$CLUSTER_DIR/s3-$i/garage.toml" node id -q 2>/dev/null) ||
    fail "garage node $i did not start (see $CLUSTER_DIR/s3-$i/log)"
  g node connect "$id" >/dev/null || fail "could not connect garage node $i"
done
for _ in $(seq 1 100); do
  [ "$(g status 2>/dev/null | grep -c 'NO ROLE ASSIGNED')" -ge "$S3_NODES" ] && break
  sleep 0.1
done
for id in $(g status 2>/dev/null | awk '/NO ROLE ASSIGNED/ {print $1}'); do
  g layout assign -z dc1 -c 1G "$id" >/dev/null
done
g layout apply --version 1 >/dev/null || fail "garage layout apply failed"
key_id=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
key_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
g key import --yes -n ringmail "$key_id" "$key_secret" >/dev/null || fail "garage key import failed"
g bucket create ringmail >/dev/null || fail "garage bucket create failed"
g bucket allow --read --write --owner ringmail --key ringmail >/dev/null ||
  fail "garage bucket allow failed"
# Ready when every node says so (it has the layout and can reach a quorum of copies).
for i in $(seq 1 "$S3_NODES"); do
  admin=$((BASE_PORT + 30 + 10 * (i - 1) + 3))
  ok=0
  for _ in $(seq 1 200); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$admin/health")" = 200 ]; then
      ok=1
      break
    fi
    sleep 0.05
  done
  [ $ok = 1 ] || fail "garage node $i is not healthy (see $CLUSTER_DIR/s3-$i/log)"
done
out "S3_REGION=garage"
out "S3_BUCKET=ringmail"
out "S3_ACCESS_KEY=$key_id"
out "S3_SECRET_KEY=$key_secret"

# ---- etcd ready: every member answers /health
for i in $(seq 1 "$ETCD_MEMBERS"); do
  client=$((BASE_PORT + 2 * i - 2))
  ok=0
  for _ in $(seq 1 100); do
    if curl -sf "http://$HOST:$client/health" 2>/dev/null | grep -q '"health":"true"'; then
      ok=1
      break
    fi
    sleep 0.1
  done
  [ $ok = 1 ] || fail "etcd member $i is not healthy (see $CLUSTER_DIR/etcd$i/log)"
done
# ---- ringmail nodes: node i on 127.0.0.i, ports BASE_PORT+60.. (SMTP, LMTP, IMAP, POP3,
# metrics); one users.toml made once and given to every node.
if [ "$NODES" -gt 0 ]; then
  if [ ! -x "$RINGMAIL" ]; then
    echo "building $RINGMAIL ..." >&2
    (cd "$ROOT" && cargo build --release -q -p ringmail) || fail "cannot build ringmail"
  fi
  users=$CLUSTER_DIR/users
  mkdir -p "$users"
  for u in $(seq 1 "$USERS"); do
    "$RINGMAIL" user add "bench$u@example.org" --password bench --data "$users" >/dev/null ||
      fail "cannot add bench$u"
  done
  etcd_list=$(echo "$endpoints" | sed 's/[^,]*/"&"/g')
  for i in $(seq 1 "$NODES"); do
    ip=127.0.0.$i
    d=$CLUSTER_DIR/node$i
    mkdir -p "$d/data"
    chmod 700 "$d/data"
    cp "$users/users.toml" "$d/data/users.toml"
    {
      echo "partitions = $PARTITIONS"
      echo "segment_mib = 16"
      [ -n "${NODE_TOP:-}" ] && echo "$NODE_TOP"
      echo "[auth]"
      echo "danger_plaintext_without_tls = true"
      echo "[limits]"
      echo "max_connections_per_ip = $MAX_CONN_PER_IP"
      echo "[cluster]"
      echo "name = \"local\""
      echo "node = \"node$i\""
      echo "etcd = [$etcd_list]"
      echo "lease_ttl_secs = $LEASE_TTL"
      [ -n "${SHIP_IN_FLIGHT:-}" ] && echo "ship_in_flight = $SHIP_IN_FLIGHT"
      [ -n "${SHIP_INTERVAL_MS:-}" ] && echo "ship_interval_ms = $SHIP_INTERVAL_MS"
      echo "listen = \"$ip:$((BASE_PORT + 65))\""
      echo "[cluster.s3]"
      echo "endpoint = \"http://$HOST:$((BASE_PORT + 30))\""
      echo "region = \"garage\""
      echo "bucket = \"ringmail\""
      echo "access_key = \"$key_id\""
      echo "secret_key = \"$key_secret\""
    } >"$d/ringmail.toml"
    smtp=$((BASE_PORT + 60))
    pid=$(spawn "node$i" env RUST_LOG="${NODE_LOG:-info}" "$RINGMAIL" serve --config "$d/ringmail.toml" \
      --data "$d/data" --smtp "$ip:$smtp" --lmtp "$ip:$((smtp + 1))" --imap "$ip:$((smtp + 2))" \
      --pop3 "$ip:$((smtp + 3))" --metrics "$ip:$((smtp + 4))" \
      --submission off --smtps off --imaps off --pop3s off)
    out "NODE${i}_PID=$pid"
    out "NODE${i}_SMTP=$ip:$smtp"
    out "NODE${i}_LMTP=$ip:$((smtp + 1))"
    out "NODE${i}_IMAP=$ip:$((smtp + 2))"
    out "NODE${i}_POP3=$ip:$((smtp + 3))"
    out "NODE${i}_METRICS=$ip:$((smtp + 4))"
    out "NODE${i}_CLUSTER=$ip:$((BASE_PORT + 65))"
    out "NODE${i}_CONFIG=$d/ringmail.toml"
  done
  for i in $(seq 1 "$NODES"); do
    ok=0
    for _ in $(seq 1 300); do
      if (exec 3<>"/dev/tcp/127.0.0.$i/$((BASE_PORT + 61))") 2>/dev/null; then
        ok=1
        break
      fi
      sleep 0.1
    done
    [ $ok = 1 ] || fail "ringmail node $i did not start (see $CLUSTER_DIR/node$i/log)"
  done
  # Every partition owned before the caller starts.
  owned=0
  for _ in $(seq 1 300); do
    owned=$("$RINGMAIL" cluster status --config "$CLUSTER_DIR/node1/ringmail.toml" 2>/dev/null |
      awk '/^ +[0-9]+  / && $2 != "-" {n++} END {print n+0}')
    [ "$owned" -ge "$PARTITIONS" ] && break
    sleep 0.2
  done
  [ "$owned" -ge "$PARTITIONS" ] || fail "only $owned of $PARTITIONS partitions are owned"
fi
out "CLUSTER_DIR=$CLUSTER_DIR"
