#!/usr/bin/env bash
# taskcore next to the shared bench's peers (/work/shared/bench/run_peers.py),
# e.g.   bench/compare_peers.sh --n 1000 --runs 1 --peers seedstack
# Extra arguments go to run_peers.py. Prints the exact command it runs.
#
# What it adds around run_peers.py, and why:
#  * venvs and results under $BENCH_STATE (default /tmp/taskcore-bench), not
#    in the shared (read-only) folder; only the driver and seedstack venvs are
#    built, from the shared bench's pinned requirements (setup_venvs.sh builds
#    all five; SETUP_ALL_VENVS=1 runs it instead).
#  * a private Redis on 127.0.0.1:$PEER_REDIS_PORT (default 6390) for every
#    system in the comparison: run_peers.py resets its built-in peers with
#    `redis-cli -h 127.0.0.1 flushall`, which on the shared 6379 would wipe
#    the keys of test runs going on at the same time. A `redis-cli` shim first
#    on PATH points that flushall at the private server, and REDIS_URL /
#    BENCH_REDIS_URL point seedstack and taskcore there.
#    arq's peer is the exception: it is fixed on 6379 db 3, so the shim
#    sends its readiness check there and empties that db on a flushall.
#  * taskcore runs with TASKCORE_AUTH=none here (see start_ours.sh): run_peers.py
#    cannot send an Authorization header.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_BENCH:-$(cd "$REPO/../shared/bench" && pwd)}
export BENCH_STATE=${BENCH_STATE:-/tmp/taskcore-bench}
PEER_REDIS_PORT=${PEER_REDIS_PORT:-6390}
PORT=${BENCH_PORT:-8005}
NAME=${BENCH_PEERS_DB:-taskcore_peers}
mkdir -p "$BENCH_STATE/.venvs" "$BENCH_STATE/results/raw" "$BENCH_STATE/shim"

# -- venvs (idempotent)
if [ -n "${SETUP_ALL_VENVS:-}" ]; then
  "$SHARED/setup_venvs.sh"
else
  mk() {  # as setup_venvs.sh does it, for one venv
    local v=$BENCH_STATE/.venvs/$1
    [ -x "$v/bin/python" ] || python3 -m venv "$v"
    [ -f "$v/.bench-ok" ] && cmp -s "$2" "$v/.bench-ok" && return 0
    "$v/bin/pip" install -q --disable-pip-version-check -r "$2" 2>&1 | grep -v 'is ignored' || true
    cp "$2" "$v/.bench-ok"
  }
  mk driver "$SHARED/requirements-driver.txt" &
  mk seedstack "$SHARED/peers/seedstack/requirements.txt" &
  wait
fi

# -- the private Redis and the flushall shim
if ! redis-cli -h 127.0.0.1 -p "$PEER_REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PEER_REDIS_PORT" --save '' --appendonly no \
    --logfile "$BENCH_STATE/redis-$PEER_REDIS_PORT.log" --pidfile "$BENCH_STATE/redis-$PEER_REDIS_PORT.pid"
  for _ in $(seq 50); do redis-cli -p "$PEER_REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
fi
REAL_REDIS_CLI=$(command -v redis-cli)
ARQ_DB=3  # fixed in the shared bench (run_peers.py checks -n 3)
cat > "$BENCH_STATE/shim/redis-cli" <<SHIM
#!/bin/sh
# arq's peer is fixed on 127.0.0.1:6379 db $ARQ_DB (peers/arq_peer/tasks.py): its
# readiness check (-n $ARQ_DB) goes there, and a flushall also empties that one db.
case " \$* " in
  *" -n $ARQ_DB "*) exec $REAL_REDIS_CLI -p 6379 "\$@" ;;
  *" flushall "*) $REAL_REDIS_CLI -p 6379 -n $ARQ_DB flushdb >/dev/null ;;
esac
exec $REAL_REDIS_CLI -p $PEER_REDIS_PORT "\$@"
SHIM
chmod +x "$BENCH_STATE/shim/redis-cli"
export PATH=$BENCH_STATE/shim:$PATH
export REDIS_URL=redis://127.0.0.1:$PEER_REDIS_PORT/0         # seedstack
export BENCH_REDIS_URL=redis://127.0.0.1:$PEER_REDIS_PORT/0   # taskcore (start_ours.sh)
# taskcore-lib as a plain `pip install taskcore` runs: tracing off (start_ours.sh does the same).
export BENCH_TASKCORE_SET="TASKCORE_OTEL=off ${BENCH_TASKCORE_SET:-}"

# -- seedstack's database must exist (run_peers.py truncates its `tasks` table)
psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='bench'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE bench"
# taskcore's own database, fresh
"$REPO/.venv/bin/python" "$REPO/bench/harness.py" ensure-db "$NAME" --fresh >/dev/null

cmd=("$BENCH_STATE/.venvs/driver/bin/python" "$SHARED/run_peers.py"
     --http-base "http://127.0.0.1:$PORT" --name taskcore
     --start-cmd "exec $REPO/bench/start_ours.sh"
     --reset-cmd "$REPO/bench/reset_ours.sh"
     --pg-latency-dsn "postgresql://postgres@127.0.0.1:5432/$NAME"
     --skip-raw "$@")
echo "+ BENCH_STATE=$BENCH_STATE PATH=$BENCH_STATE/shim:\$PATH REDIS_URL=$REDIS_URL BENCH_REDIS_URL=$BENCH_REDIS_URL \\" >&2
printf '  %q' "${cmd[@]}" >&2; echo >&2
exec "${cmd[@]}"
