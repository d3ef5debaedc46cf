#!/usr/bin/env bash
# Start/stop the local Prefect server, the process serving deployment `atlas/train`, and the MLflow UI.
# Everything binds to 127.0.0.1; each process is stopped by the PID recorded in .atlas/run/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.atlas/run
mkdir -p "$RUN"
BIN=.venv/bin
PREFECT_PORT=${PREFECT_PORT:-4200}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
export PREFECT_API_URL="http://127.0.0.1:${PREFECT_PORT}/api"

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_for() {  # name, command, seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    alive "$1" || { echo "$1 exited; see $RUN/$1.log" >&2; tail -n 20 "$RUN/$1.log" >&2; return 1; }
    sleep 0.5
  done
  echo "$1 not healthy after $3 s; see $RUN/$1.log" >&2
  return 1
}

start() {  # name, command...
  local name=$1; shift
  if alive "$name"; then echo "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  nohup "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

stop_one() {
  local name=$1
  if alive "$name"; then
    local pid; pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

health() { "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"; }

case "${1:-}" in
  serve)
    start prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
    wait_for prefect-server "health http://127.0.0.1:${PREFECT_PORT}/api/health" 60
    start prefect-serve "$BIN/python" -m flows.train
    wait_for prefect-serve "$BIN/prefect deployment inspect atlas/train" 90
    echo "Prefect UI http://127.0.0.1:${PREFECT_PORT}; deployment atlas/train is served."
    echo "Run it: PREFECT_API_URL=$PREFECT_API_URL .venv/bin/prefect deployment run atlas/train --watch"
    ;;
  ui)
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
    start mlflow-ui "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
      --backend-store-uri "sqlite:///$PWD/mlruns.db" --default-artifact-root "$PWD/mlartifacts"
    wait_for mlflow-ui "health http://127.0.0.1:${MLFLOW_PORT}/health" 60
    # MLflow 3.17's UI opens in its GenAI view; the query parameter opens the model-training view (runs, Compare).
    echo "MLflow UI http://127.0.0.1:${MLFLOW_PORT}/#/experiments?workflowType=machine_learning"
    ;;
  stop)
    stop_one prefect-serve
    stop_one prefect-server
    stop_one mlflow-ui
    ;;
  *)
    echo "usage: $0 serve|ui|stop" >&2
    exit 2
    ;;
esac
