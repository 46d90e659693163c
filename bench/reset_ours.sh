#!/usr/bin/env bash
# Empty what start_ours.sh uses (run_peers.py --reset-cmd): TRUNCATE its tasks
# table, purge its queue and dead-letter queue, delete its Redis keys. Touches
# nothing else on the shared servers (no FLUSHALL).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${BENCH_PEERS_DB:-taskcore_peers}
"$REPO/.venv/bin/python" "$REPO/bench/harness.py" ensure-db "$NAME" >/dev/null
exec "$REPO/.venv/bin/python" "$REPO/bench/harness.py" reset "$NAME" "$NAME.tasks" "$NAME:"
