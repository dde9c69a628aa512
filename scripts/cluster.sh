#!/usr/bin/env bash
# A local multi-node Ray cluster on this one machine, made with Ray's own `ray start`:
# a head node and two worker nodes, each worker with the custom resource that
# configs/cluster.yaml places replicas by (translate_node, speak_node).
#
#   scripts/cluster.sh up                      head + translate + speak workers; prints the addresses
#   scripts/cluster.sh status                  which nodes of this cluster are up, and `ray status`
#   scripts/cluster.sh env                     the addresses as shell variables: eval "$(scripts/cluster.sh env)"
#   scripts/cluster.sh stop-node NAME          stop one node (e.g. translate): its own Ray processes only
#   scripts/cluster.sh kill-node NAME          the same as a crash: SIGKILL to all of that node's processes
#   scripts/cluster.sh start-node ROLE [NAME]  add a worker with {"<ROLE>_node": 1} (ROLE: translate, speak)
#   scripts/cluster.sh down                    stop every node of this cluster
#
# Then:  serve deploy configs/cluster.yaml -a "$HAYAKU_DASHBOARD"   (README, "Multi-node cluster")
#
# Several Ray instances share this machine (other people's tests), so this cluster keeps to itself:
# its own temp dir (HAYAKU_CLUSTER_DIR, default /tmp/hayaku-cluster-<uid>: a plain `ray.init()`
# elsewhere never finds it), free ports for everything Ray would put on a fixed one (6379, 8265,
# 10001, 52365), the dashboard on 127.0.0.1, its own auth token, and never `ray stop` (that stops
# every Ray on the machine). Each node is one `ray start --block` in a session of its own: SIGTERM
# to it makes Ray's reaper stop exactly that node's processes.
#
# Nodes advertise HAYAKU_CLUSTER_IP (default 127.0.0.2, a loopback address): `ray start` replaces
# 127.0.0.1 by the machine's external address (resolve_ip_for_localhost), other loopback addresses
# are kept. Ray's gRPC servers still listen on every interface, hence the token.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DIR=${HAYAKU_CLUSTER_DIR:-/tmp/hayaku-cluster-$(id -u)}
IP=${HAYAKU_CLUSTER_IP:-127.0.0.2}
# Ray's CLI and a Python of the environment hayaku is installed in: RAY and PYTHON when given (the
# test harness passes those of the Python running it), else the checkout's .venv, else PATH's
if [ -z "${RAY:-}" ]; then
  if [ -x "$ROOT/.venv/bin/ray" ]; then RAY=$ROOT/.venv/bin/ray; else RAY=$(command -v ray || echo ray); fi
fi
PYTHON=${PYTHON:-$(dirname "$RAY")/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3 || echo python3)
HEAD_CPUS=${HAYAKU_HEAD_CPUS:-1}
TRANSLATE_CPUS=${HAYAKU_TRANSLATE_CPUS:-2}
SPEAK_CPUS=${HAYAKU_SPEAK_CPUS:-1}
# per node; Ray's default (30% of RAM each) is far too much for several nodes on one machine
OBJECT_STORE_BYTES=${HAYAKU_OBJECT_STORE_BYTES:-200000000}
START_TIMEOUT_S=${HAYAKU_NODE_START_TIMEOUT_S:-180}
START_ATTEMPTS=${HAYAKU_NODE_START_ATTEMPTS:-5}
HEALTH_CHECK_FAILURES=${HAYAKU_HEALTH_CHECK_FAILURES:-10}

say() { printf '[cluster] %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

free_ports() { # N distinct free TCP ports on loopback
  "$PYTHON" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

node_pid() { cat "$DIR/nodes/$1.pid" 2>/dev/null || true; }
# The live processes of a node's session: its `ray start`, the raylet, agents and workers (Ray puts
# workers in process groups of their own, so the session is what holds a node together).
session_pids() { ps --sid "$1" -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ { print $1 }'; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

load_env() {
  [ -f "$DIR/cluster.env" ] || die "no cluster in $DIR; run: scripts/cluster.sh up"
  # shellcheck disable=SC1091
  . "$DIR/cluster.env"
}

# Starts `ray start --block` for one node in a session of its own; returns at once (see wait_started).
# Every port is given: with several nodes on one machine, ports Ray picks itself can collide, and a
# raylet that must wait for its agents to report theirs gives up after a few seconds on a busy machine.
spawn() {
  local name=$1 ports
  shift
  read -r -a ports <<<"$(free_ports 6)"
  alive "$(node_pid "$name")" && die "node $name is already running (pid $(node_pid "$name"))"
  mkdir -p "$DIR/nodes" "$DIR/logs"
  # On a busy machine a node can take longer than Ray's 30 s to register, and a live raylet can miss
  # Ray's default 5 health checks in a row (3 s apart) and be declared dead; 10 still notices a
  # killed node within about 30 s.
  env -u RAY_ADDRESS RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$DIR/auth_token" \
    RAY_raylet_start_wait_time_s="$START_TIMEOUT_S" RAY_health_check_failure_threshold="$HEALTH_CHECK_FAILURES" \
    setsid "$RAY" start --block --disable-usage-stats \
    --node-ip-address="$IP" --object-store-memory="$OBJECT_STORE_BYTES" \
    --min-worker-port=0 --max-worker-port=0 --node-manager-port="${ports[0]}" \
    --object-manager-port="${ports[1]}" --dashboard-agent-grpc-port="${ports[2]}" \
    --dashboard-agent-listen-port="${ports[3]}" --runtime-env-agent-port="${ports[4]}" \
    --metrics-export-port="${ports[5]}" "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 &
  echo "$!" >"$DIR/nodes/$name.pid"
  disown "$!" # a node stopped later is no job of this shell to report
  echo "METRICS_PORT=${ports[5]}" >"$DIR/nodes/$name.env"
}

# Waits until Ray says the node started. Returns 1 (with the end of the log) when `ray start` exits
# first or its raylet dies: on a busy machine a raylet gives up when its agents take more than
# 15 s to report their ports (a fixed wait in Ray), and `ray start` would only notice minutes later.
wait_started() {
  local name=$1 pid log="$DIR/logs/$1.log" waited=0 raylet_seen=0
  pid=$(node_pid "$name")
  until grep -q "Ray runtime started" "$log" 2>/dev/null; do
    # a dead raylet stays a zombie until `ray start` reaps it: count live ones only
    if ps --sid "$pid" -o stat=,comm= | awk '$1 !~ /^Z/ && $2 == "raylet" { n++ } END { exit n == 0 }'; then
      raylet_seen=1
    elif [ "$raylet_seen" = 1 ] || ! alive "$pid"; then
      tail -n 5 "$log" >&2
      say "node $name failed to start (log: $log)"
      return 1
    fi
    if [ "$waited" -ge "$START_TIMEOUT_S" ]; then
      say "node $name did not start within ${START_TIMEOUT_S} s (log: $log)"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "node $name up (pid $pid, ${waited} s)"
}

# spawn + wait_started, up to START_ATTEMPTS times
start() {
  local name=$1 attempt
  for attempt in $(seq "$START_ATTEMPTS"); do
    spawn "$@"
    wait_started "$name" && return 0
    stop_node "$name" KILL
    [ "$attempt" -lt "$START_ATTEMPTS" ] && say "retrying node $name ($((attempt + 1))/$START_ATTEMPTS)"
  done
  die "node $name did not start in $START_ATTEMPTS attempts"
}

start_worker() {
  local role=$1 name=${2:-$1} cpus
  case "$role" in
    translate) cpus=$TRANSLATE_CPUS ;;
    speak) cpus=$SPEAK_CPUS ;;
    *) die "unknown role $role; valid: translate, speak" ;;
  esac
  load_env
  say "starting worker $name ({\"${role}_node\": 1}, $cpus CPUs)"
  start "$name" --address="$RAY_ADDRESS" --num-cpus="$cpus" --resources="{\"${role}_node\": 1}"
}

# SIGTERM to a node's `ray start --block` (or SIGKILL to its whole session at once: a crash).
stop_node() {
  local name=$1 signal=${2:-TERM} pid waited=0 left
  pid=$(node_pid "$name")
  if [ -z "$pid" ] || [ -z "$(session_pids "$pid")" ]; then
    say "node $name is not running"
    rm -f "$DIR/nodes/$name.pid"
    return 0
  fi
  if [ "$signal" = KILL ]; then
    # shellcheck disable=SC2046
    kill -KILL $(session_pids "$pid") 2>/dev/null || true
  else
    # Ray drains the node, then its reaper stops the process group; workers follow their raylet
    kill -TERM "$pid"
  fi
  while left=$(session_pids "$pid") && [ -n "$left" ] && [ "$waited" -lt 30 ]; do
    sleep 1
    waited=$((waited + 1))
  done
  # shellcheck disable=SC2086
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  rm -f "$DIR/nodes/$name.pid"
  say "node $name stopped ($signal)"
}

cmd_up() {
  local ports
  if alive "$(node_pid head)"; then
    die "a cluster is already up in $DIR (scripts/cluster.sh down first)"
  fi
  # only what an earlier cluster left here: HAYAKU_CLUSTER_DIR may name a folder with other things in it
  rm -rf "$DIR/ray" "$DIR/nodes" "$DIR/logs" "$DIR/cluster.env" "$DIR/auth_token"
  mkdir -p "$DIR/ray" "$DIR/nodes" "$DIR/logs"
  # Token authentication (Ray's default for new clusters) with a token of this cluster's own;
  # clients find it through `scripts/cluster.sh env` (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH).
  (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' >"$DIR/auth_token")
  read -r -a ports <<<"$(free_ports 3)"
  {
    echo "RAY_ADDRESS=$IP:${ports[0]}"
    echo "HAYAKU_DASHBOARD=http://127.0.0.1:${ports[1]}"
    echo "RAY_AUTH_MODE=token"
    echo "RAY_AUTH_TOKEN_PATH=$DIR/auth_token"
    echo "HAYAKU_CLUSTER_TEMP=$DIR/ray"
  } >"$DIR/cluster.env"
  load_env
  say "starting head at $RAY_ADDRESS (dashboard $HAYAKU_DASHBOARD, temp dir $DIR/ray)"
  # a failed start leaves nothing running
  trap 'cmd_down' EXIT
  start head --head --port="${ports[0]}" --num-cpus="$HEAD_CPUS" \
    --resources='{"ingress_node": 1}' --temp-dir="$DIR/ray" \
    --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="${ports[1]}" \
    --ray-client-server-port="${ports[2]}"
  # one at a time: nodes that start together on one machine have crashed raylets
  start_worker translate
  start_worker speak
  trap - EXIT
  cmd_env
}

cmd_down() {
  local f name
  for f in "$DIR"/nodes/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    [ "$name" = head ] || stop_node "$name"
  done
  stop_node head
  rm -rf "$DIR/ray"
}

cmd_status() {
  local f name pid
  load_env
  for f in "$DIR"/nodes/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    pid=$(cat "$f")
    if alive "$pid"; then echo "node $name: up (pid $pid)"; else echo "node $name: down"; fi
  done
  RAY_AUTH_MODE=$RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH "$RAY" status --address="$RAY_ADDRESS"
}

cmd_env() {
  load_env
  echo "export RAY_ADDRESS=$RAY_ADDRESS HAYAKU_DASHBOARD=$HAYAKU_DASHBOARD RAY_AUTH_MODE=$RAY_AUTH_MODE" \
    "RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH HAYAKU_CLUSTER_TEMP=$HAYAKU_CLUSTER_TEMP"
}

usage="usage: $0 up|down|status|env|start-node ROLE [NAME]|stop-node NAME|kill-node NAME (--help)"
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  start-node)
    [ $# -ge 2 ] || die "$usage"
    start_worker "$2" "${3:-}"
    ;;
  stop-node)
    [ $# -eq 2 ] || die "$usage"
    stop_node "$2" TERM
    ;;
  kill-node)
    [ $# -eq 2 ] || die "$usage"
    stop_node "$2" KILL
    ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "$usage" ;;
esac
