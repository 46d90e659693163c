#!/usr/bin/env bash
# A private PostgreSQL 15 for the retention soak, with the server's own
# defaults, autovacuum on (this machine's shared server on 5432 runs with
# autovacuum = off, a CI setting, and must not be reconfigured):
#
#   url=$(bench/private_postgres.sh start)      # prints its URL
#   BENCH_DATABASE_URL=$url make bench BENCH_ARGS="--runs 1 --only soak"
#   bench/private_postgres.sh stop              # stops it and removes its folder
#
# Only shared_buffers is raised to the shared server's (160 MB), so the two
# runs differ in autovacuum alone. Folder BENCH_PG_DIR (/tmp/taskcore-bench-pg),
# port BENCH_PG_PORT (5497), 127.0.0.1 and its own socket folder, trust
# authentication. As root, the server runs as the postgres user.
set -euo pipefail
DIR=${BENCH_PG_DIR:-/tmp/taskcore-bench-pg}
PORT=${BENCH_PG_PORT:-5497}
BIN=/usr/lib/postgresql/15/bin
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi

case "${1:-}" in
start)
  if [ -e "$DIR" ]; then echo "private_postgres: $DIR exists; stop it first" >&2; exit 1; fi
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi
  "${as_pg[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust >"$DIR/initdb.log"
  "${as_pg[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c shared_buffers=160MB" >/dev/null
  echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
  ;;
stop)
  if [ -d "$DIR/data" ]; then "${as_pg[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true; fi
  rm -rf "$DIR"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
