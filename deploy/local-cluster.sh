#!/usr/bin/env bash
# The production topology on one machine, on loopback only (docs/deployment.md maps each piece
# to its own machine):
#
#   PostgreSQL (:PG_PORT)  <-  mlflow server (:MLFLOW_PORT, proxied artifacts)  <-  train jobs
#                                              ^
#                           metapredict serve replicas (:REPLICA_PORTS), each polling it
#
# Usage (from the repository root, after `make env`):
#   deploy/local-cluster.sh start [--quick]   start everything, train both tasks if they have no
#                                             champion yet, print the URLs, stay in the foreground;
#                                             Ctrl-C stops everything
#   deploy/local-cluster.sh stop              stop a cluster started in the background (nohup)
#   deploy/local-cluster.sh status            what is running
# --quick trains small models (a minute) instead of the packaged default configs.
#
# Settings (environment): CLUSTER_DIR (default .local-cluster), PG_PORT (15432), MLFLOW_PORT
# (15000), REPLICA_PORTS ("18001 18002"), REPLICA_WORKERS (1), POLL_SECONDS (5), VENV (.venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/.local-cluster}"
PG_PORT="${PG_PORT:-15432}"
MLFLOW_PORT="${MLFLOW_PORT:-15000}"
REPLICA_PORTS="${REPLICA_PORTS:-18001 18002}"
REPLICA_WORKERS="${REPLICA_WORKERS:-1}"
POLL_SECONDS="${POLL_SECONDS:-5}"
VENV="${VENV:-$ROOT/.venv}"
HOST=127.0.0.1
PGDATA="$CLUSTER_DIR/pgdata"
RUN="$CLUSTER_DIR/run"
LOGS="$CLUSTER_DIR/logs"
TRACKING_URI="http://$HOST:$MLFLOW_PORT"

log() { printf '%s\n' "$*" >&2; }
die() { log "local-cluster: $*"; exit 1; }

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return; fi
  die "PostgreSQL server binaries not found: apt-get install postgresql"
}

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_http() {  # url seconds pid
  local url="$1" limit=$(( SECONDS + $2 )) pid="${3:-}"
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      die "the process for $url exited; see $LOGS"
    fi
    (( SECONDS < limit )) || die "$url did not answer within $2 s; see $LOGS"
    sleep 0.2
  done
}

start_bg() {  # name, command...: start in its own process group, remember the PID
  local name="$1"; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

stop_pid() {  # name: SIGTERM the process group, SIGKILL after 20 s
  local file="$RUN/$1.pid" pid
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  log "stopped $1 (pid $pid)"
}

stop_all() {
  local port
  for port in $REPLICA_PORTS; do stop_pid "replica-$port"; done
  stop_pid mlflow-server
  if [[ -f "$PGDATA/postmaster.pid" ]]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null && log "stopped PostgreSQL"
  fi
}

start_postgres() {
  local bin; bin="$(pg_bin)"
  mkdir -p "$CLUSTER_DIR"
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    mkdir -p "$PGDATA"
    [[ "$(id -u)" == 0 ]] && chown postgres "$PGDATA"
    # trust on loopback only; a real deployment uses passwords or certificates (docs)
    as_pg "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 >"$LOGS/initdb.log"
  fi
  if [[ "$(id -u)" == 0 ]]; then chown postgres "$LOGS"; fi
  as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w \
    -o "-c listen_addresses=$HOST -p $PG_PORT -k $PGDATA" start >/dev/null
  if ! as_pg "$bin/psql" -h "$HOST" -p "$PG_PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1; then
    as_pg "$bin/createdb" -h "$HOST" -p "$PG_PORT" -U postgres mlflow
  fi
  log "PostgreSQL on $HOST:$PG_PORT (database mlflow)"
}

start_tracking_server() {
  mkdir -p "$CLUSTER_DIR/artifacts"
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false PATH="$VENV/bin:$PATH" start_bg mlflow-server \
    "$VENV/bin/mlflow" server \
    --backend-store-uri "postgresql://postgres@$HOST:$PG_PORT/mlflow" \
    --serve-artifacts --artifacts-destination "$CLUSTER_DIR/artifacts" \
    --host "$HOST" --port "$MLFLOW_PORT" --workers 1
  wait_http "$TRACKING_URI/health" 180 "$(cat "$RUN/mlflow-server.pid")"
  log "MLflow tracking server on $TRACKING_URI"
}

train_both() {
  local quick="$1" task args
  for task in tropism dormancy; do
    args=()
    if [[ "$quick" == 1 ]]; then  # the tests' tiny config: passes the champion guard
      printf '%s\n' '[data]' 'simulate_patients = 6000' 'simulate_seed = 3' 'test_size = 0.2' \
        '[cv]' 'folds = 2' \
        'bootstrap_resamples = 20' '[intervals]' 'members = 3' '[model]' 'n_estimators = 150' \
        >"$CLUSTER_DIR/quick-$task.toml"
      args=(--config "$CLUSTER_DIR/quick-$task.toml")
    fi
    log "training $task (if it has no champion yet) ..."
    METAPREDICT_TRACKING_URI="$TRACKING_URI" "$VENV/bin/metapredict" train "$task" --if-missing \
      "${args[@]}" >>"$LOGS/train-$task.log" 2>&1 || die "training $task failed; see $LOGS"
  done
}

start_replicas() {
  local port
  for port in $REPLICA_PORTS; do
    METAPREDICT_TRACKING_URI="$TRACKING_URI" PATH="$VENV/bin:$PATH" start_bg "replica-$port" \
      "$VENV/bin/metapredict" serve --host "$HOST" --port "$port" \
      --workers "$REPLICA_WORKERS" --poll-seconds "$POLL_SECONDS"
  done
  for port in $REPLICA_PORTS; do
    wait_http "http://$HOST:$port/health/ready" 180 "$(cat "$RUN/replica-$port.pid")"
  done
}

status() {
  local name
  for name in "$RUN"/*.pid; do
    [[ -e "$name" ]] || continue
    if kill -0 "$(cat "$name")" 2>/dev/null; then
      echo "$(basename "$name" .pid): running (pid $(cat "$name"))"
    else
      echo "$(basename "$name" .pid): not running"
    fi
  done
  [[ -f "$PGDATA/postmaster.pid" ]] && echo "postgresql: running (port $PG_PORT)"
  return 0
}

main() {
  local command="${1:-start}" quick=0
  [[ "${2:-}" == "--quick" ]] && quick=1
  case "$command" in
    start)
      [[ -x "$VENV/bin/metapredict" ]] || die "no $VENV/bin/metapredict: run make env first"
      mkdir -p "$RUN" "$LOGS"
      # Ctrl-C, kill, or a failed step: stop whatever was started
      trap 'log "stopping ..."; stop_all' EXIT
      trap 'exit 0' INT TERM
      start_postgres
      start_tracking_server
      train_both "$quick"
      start_replicas
      echo "MLflow UI and tracking: $TRACKING_URI"
      for port in $REPLICA_PORTS; do
        echo "replica: http://$HOST:$port (docs: http://$HOST:$port/docs)"
      done
      echo "clients: METAPREDICT_TRACKING_URI=$TRACKING_URI metapredict retrain|compare|serve ..."
      log "running; Ctrl-C (or: $0 stop) stops everything"
      while true; do sleep 1; done
      ;;
    stop) stop_all ;;
    status) status ;;
    *) die "usage: $0 start [--quick] | stop | status" ;;
  esac
}

main "$@"
