#!/usr/bin/env bash
# Start taskcore for the shared peer bench (run_peers.py --start-cmd): one
# `taskcore worker`, then, once it consumes, one `taskcore api` on
# 127.0.0.1:$BENCH_PORT (default 8005); stays in the foreground until SIGTERM
# (run_peers.py signals the whole process group after each run).
#
# AUTHENTICATION IS OFF HERE (TASKCORE_AUTH=none), for the peer comparison
# only: run_peers.py sends no Authorization header (neither its aiohttp W1
# client nor its wrk script). `make bench` runs with JWT, as users do.
# The submit rate limit is off too (TASKCORE_RATE_LIMIT_SUBMIT_PER_MINUTE=0):
# the default 6000/min per owner would turn most of W2 into 429s.
#
# Its own database (taskcore_peers, created if missing), queue
# (taskcore_peers.tasks) and Redis key prefix (taskcore_peers:). Services:
# BENCH_DATABASE_URL (a server URL that may CREATE DATABASE), BENCH_REDIS_URL,
# BENCH_AMQP_URL, else the local defaults. Extra settings: BENCH_SET="TASKCORE_X=1 TASKCORE_Y=2".
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$REPO/.venv/bin/python
TASKCORE=$REPO/.venv/bin/taskcore
make -s -C "$REPO" install >/dev/null  # a no-op unless someone added a module meanwhile
NAME=${BENCH_PEERS_DB:-taskcore_peers}
PORT=${BENCH_PORT:-8005}

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "start_ours: something already listens on 127.0.0.1:$PORT" >&2
  exit 1
fi

# Never inherit a developer's own TASKCORE_* settings.
for var in $(compgen -e | grep '^TASKCORE_' || true); do unset "$var"; done
export TASKCORE_DATABASE_URL
TASKCORE_DATABASE_URL=$("$PY" "$REPO/bench/harness.py" ensure-db "$NAME")
export TASKCORE_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
export TASKCORE_AMQP_URL=${BENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
export TASKCORE_QUEUE_NAME=$NAME.tasks
export TASKCORE_CACHE_PREFIX=$NAME:
export TASKCORE_AUTH=none
export TASKCORE_REVERSE_DELAY_S=0
export TASKCORE_RATE_LIMIT_SUBMIT_PER_MINUTE=0
# Tracing off, as in a plain `pip install taskcore` (the otel extra is in the
# dev venv for its tests); what tracing costs is measured in the README's "Tracing".
export TASKCORE_OTEL=off
# The worker's /metrics port (default 9100) may be taken by another worker on this machine.
TASKCORE_WORKER_METRICS_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TASKCORE_WORKER_METRICS_PORT
for kv in ${BENCH_SET:-}; do export "${kv?}"; done

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop TERM INT HUP

"$TASKCORE" worker &
pids+=($!)
"$PY" "$REPO/bench/harness.py" wait-consumer "$TASKCORE_QUEUE_NAME" --timeout 60
"$TASKCORE" api --host 127.0.0.1 --port "$PORT" &
pids+=($!)
wait
