#!/usr/bin/env bash
# Starts or stops the throwaway PostgreSQL 15 and Redis the integration
# specs talk to. PostgreSQL refuses to run as root, so it runs as the
# `postgres` user in a temp dir; both listen on loopback only.
#
#   bash scripts/services.sh start DIR   # prints `export ...` lines
#   bash scripts/services.sh stop DIR
#   bash scripts/services.sh start-pg DIR   # PostgreSQL alone (the demo's
#                                           # knowledge base); stop as above
#
# Ports: CHORUS_PG_PORT (45432) and CHORUS_REDIS_PORT (46379). The server
# runs with stock durability (fsync on): the specs check real behaviour.
set -euo pipefail
cmd=${1:?start|stop}
base=${2:?directory}
pgport=${CHORUS_PG_PORT:-45432}
redisport=${CHORUS_REDIS_PORT:-46379}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# stop uses the ports start wrote down, whatever the environment says now.
if [ "$cmd" = stop ] && [ -f "$base/ports" ]; then
  read -r pgport redisport <"$base/ports"
fi

# in_use PORT: something already answers on 127.0.0.1:PORT.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$cmd" in
start | start-pg)
  # Refuse rather than run the specs against someone else's servers.
  ports=("$pgport")
  [ "$cmd" = start-pg ] || ports+=("$redisport")
  for p in "${ports[@]}"; do
    if in_use "$p"; then
      echo "services.sh: port $p on 127.0.0.1 is in use; set CHORUS_PG_PORT / CHORUS_REDIS_PORT" >&2
      exit 1
    fi
  done
  mkdir -p "$base/pgsock" "$base/redis"
  chmod 755 "$base"
  if [ "$cmd" = start ]; then echo "$pgport $redisport" >"$base/ports"; else echo "$pgport -" >"$base/ports"; fi
  touch "$base/pg.log"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$base/pgsock" "$base/pg.log"
    install -d -o postgres -g postgres -m 700 "$base/pgdata"
  else
    install -d -m 700 "$base/pgdata"
  fi
  as_pg "$pgbin/initdb" -D "$base/pgdata" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 -N >/dev/null
  # -l is required: without it the postmaster keeps our stdout open.
  as_pg "$pgbin/pg_ctl" -D "$base/pgdata" -l "$base/pg.log" -w -t 60 \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -c unix_socket_directories=$base/pgsock -c max_connections=300" \
    start >/dev/null
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres chorus_test
  echo "export CHORUS_TEST_PG=postgresql://postgres@127.0.0.1:$pgport/chorus_test"
  echo "export CHORUS_TEST_PG_DIR=$base/pgdata"
  echo "export CHORUS_TEST_PG_BIN=$pgbin"
  [ "$cmd" = start ] || exit 0
  redis-server --port "$redisport" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$base/redis/redis.pid" --logfile "$base/redis/redis.log" \
    --dir "$base/redis" --save '' --appendonly no >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$redisport" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redisport" ping >/dev/null
  echo "export CHORUS_TEST_REDIS=redis://127.0.0.1:$redisport/0"
  echo "export CHORUS_TEST_REDIS_PORT=$redisport"
  ;;
stop)
  [ "$redisport" = - ] || redis-cli -p "$redisport" shutdown nosave >/dev/null 2>&1 || true
  if [ -d "$base/pgdata" ]; then
    as_pg "$pgbin/pg_ctl" -D "$base/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  ;;
*)
  echo "usage: services.sh start|start-pg|stop DIR" >&2
  exit 2
  ;;
esac
