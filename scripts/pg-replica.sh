#!/usr/bin/env bash
# A local streaming replica (hot standby) of the PostgreSQL on 127.0.0.1:5432, as a second
# cluster on another port, for `crm-api serve --read-store` (docs/operations.md).
#
#   scripts/pg-replica.sh create PORT DIR   copy the primary (pg_basebackup -R) into DIR and
#                                           start it on 127.0.0.1:PORT; on a DIR that already
#                                           holds the replica, only starts it
#   scripts/pg-replica.sh start DIR         start a stopped replica
#   scripts/pg-replica.sh stop DIR          stop it (fast shutdown); nothing to do if stopped
#   scripts/pg-replica.sh remove DIR        stop it and delete DIR
#   scripts/pg-replica.sh status DIR        running or not, and its WAL receiver's state
#
# The primary: PRIMARY_HOST (127.0.0.1), PRIMARY_PORT (5432), PRIMARY_USER (postgres), trust
# authentication, replication connections allowed from 127.0.0.1 (the script checks and says
# what to add to pg_hba.conf). The binaries: PG_BIN, else /usr/lib/postgresql/<the primary's
# major version>/bin. Run as root (the cluster runs as the `postgres` user, through runuser)
# or as postgres. No replication slot is made: a replica stopped for long may need `remove`
# and `create` again once the primary has recycled the WAL it missed.
set -euo pipefail

PRIMARY_HOST=${PRIMARY_HOST:-127.0.0.1}
PRIMARY_PORT=${PRIMARY_PORT:-5432}
PRIMARY_USER=${PRIMARY_USER:-postgres}
LOG_NAME=replica.log

die() {
  echo "pg-replica: $*" >&2
  exit 1
}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Runs a command as the postgres user.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  elif [ "$(id -un)" = postgres ]; then
    "$@"
  else
    die "run as root or as the postgres user (now $(id -un))"
  fi
}

primary_sql() {
  psql -X -A -t -q -w -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" -d postgres -c "$1"
}

bin_dir() {
  if [ -n "${PG_BIN:-}" ]; then
    echo "$PG_BIN"
    return
  fi
  local version
  version=$(primary_sql "SHOW server_version_num") ||
    die "cannot reach the primary at $PRIMARY_HOST:$PRIMARY_PORT as $PRIMARY_USER"
  echo "/usr/lib/postgresql/$((version / 10000))/bin"
}

check_port() {
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1024 ] && [ "$1" -le 65535 ] ||
    die "PORT must be a number from 1024 to 65535, not ${1@Q}"
  [ "$1" != "$PRIMARY_PORT" ] || die "PORT $1 is the primary's port"
}

is_replica_dir() { [ -f "$1/PG_VERSION" ] && [ -f "$1/standby.signal" ]; }

running() { as_postgres "$BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

port_of() { sed -n -E "s/^port = ([0-9]+).*/\1/p" "$1/postgresql.conf" | tail -n 1; }

start() {
  local dir=$1
  is_replica_dir "$dir" || die "$dir holds no replica made by this script (no PG_VERSION and standby.signal)"
  if running "$dir"; then
    echo "pg-replica: already running on port $(port_of "$dir") ($dir)"
    return
  fi
  as_postgres "$BIN/pg_ctl" -D "$dir" -l "$dir/$LOG_NAME" -w -t 60 start >/dev/null ||
    die "the replica in $dir did not start; its log ($dir/$LOG_NAME) ends with:
$(tail -n 20 "$dir/$LOG_NAME" 2>/dev/null)"
  local port
  port=$(port_of "$dir")
  # pg_ctl -w returns once the standby accepts connections (a consistent state reached).
  for _ in $(seq 1 60); do
    local state
    state=$(psql -X -A -t -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)
    if [ "$state" = streaming ]; then
      echo "pg-replica: streaming from $PRIMARY_HOST:$PRIMARY_PORT on 127.0.0.1:$port ($dir)"
      return
    fi
    sleep 0.5
  done
  die "the replica on port $port runs but does not stream from the primary; see $dir/$LOG_NAME"
}

create() {
  local port=$1 dir=$2
  check_port "$port"
  if is_replica_dir "$dir"; then
    [ "$(port_of "$dir")" = "$port" ] ||
      die "$dir already holds a replica on port $(port_of "$dir"), not $port (remove it first)"
    start "$dir"
    return
  fi
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    die "$dir exists and is not empty, and is no replica: give an empty or new directory"
  fi
  if pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
    die "something already listens on 127.0.0.1:$port: pick another PORT"
  fi
  primary_sql "SELECT 1" >/dev/null ||
    die "cannot reach the primary at $PRIMARY_HOST:$PRIMARY_PORT as $PRIMARY_USER (trust auth)"
  local wal_level
  wal_level=$(primary_sql "SHOW wal_level")
  [ "$wal_level" != minimal ] ||
    die "the primary runs with wal_level = minimal: set it to replica (and restart it)"
  if ! psql -X -q -w "host=$PRIMARY_HOST port=$PRIMARY_PORT user=$PRIMARY_USER replication=true" \
    -c "IDENTIFY_SYSTEM" >/dev/null 2>&1; then
    local hba
    hba=$(primary_sql "SHOW hba_file" 2>/dev/null || echo "the primary's pg_hba.conf")
    die "the primary refuses replication connections from $PRIMARY_HOST as $PRIMARY_USER.
Add this line to $hba, before any other line for replication from 127.0.0.1 (the first
matching line wins):
  host replication all 127.0.0.1/32 trust
then reload it: psql -h $PRIMARY_HOST -U postgres -c 'SELECT pg_reload_conf()'"
  fi
  mkdir -p "$dir"
  chown postgres: "$dir" 2>/dev/null || true
  chmod 700 "$dir"
  as_postgres test -w "$dir" ||
    die "the postgres user cannot write to $dir (are its parent directories searchable by it?)"
  as_postgres "$BIN/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" \
    -D "$dir" -R -X stream -c fast --no-password ||
    die "pg_basebackup from $PRIMARY_HOST:$PRIMARY_PORT into $dir failed"
  # A standby needs these at least as high as its primary's, or it refuses to start.
  local settings=""
  for name in max_connections max_worker_processes max_wal_senders \
    max_prepared_transactions max_locks_per_transaction; do
    settings+="$name = $(primary_sql "SHOW $name")"$'\n'
  done
  # Debian keeps the primary's postgresql.conf and pg_hba.conf outside its data directory:
  # the replica gets its own.
  as_postgres tee "$dir/postgresql.conf" >/dev/null <<CONF
# Written by scripts/pg-replica.sh: a hot standby of $PRIMARY_HOST:$PRIMARY_PORT.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
hot_standby = on
hot_standby_feedback = on
shared_buffers = 32MB
logging_collector = off
$settings
CONF
  as_postgres tee "$dir/pg_hba.conf" >/dev/null <<HBA
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
HBA
  start "$dir"
}

stop() {
  local dir=$1
  is_replica_dir "$dir" || die "$dir holds no replica made by this script"
  if ! running "$dir"; then
    echo "pg-replica: not running ($dir)"
    return
  fi
  as_postgres "$BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null ||
    die "the replica in $dir did not stop; see $dir/$LOG_NAME"
  echo "pg-replica: stopped ($dir)"
}

remove() {
  local dir=$1
  if [ ! -e "$dir" ]; then
    echo "pg-replica: nothing at $dir"
    return
  fi
  is_replica_dir "$dir" || die "$dir holds no replica made by this script: not deleting it"
  stop "$dir"
  rm -rf "$dir"
  echo "pg-replica: removed $dir"
}

status() {
  local dir=$1
  is_replica_dir "$dir" || die "$dir holds no replica made by this script"
  if ! running "$dir"; then
    echo "stopped ($dir)"
    return 3
  fi
  local port
  port=$(port_of "$dir")
  echo "running on 127.0.0.1:$port ($dir)"
  psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c "SELECT status, sender_host, sender_port, latest_end_lsn, pg_last_wal_replay_lsn() AS replayed, pg_is_wal_replay_paused() AS paused FROM pg_stat_wal_receiver"
}

command=${1:-}
case "$command" in
  create)
    [ $# -eq 3 ] || usage
    BIN=$(bin_dir)
    create "$2" "$(realpath -m "$3")"
    ;;
  start | stop | remove | status)
    [ $# -eq 2 ] || usage
    dir=$(realpath -m "$2")
    if [ -n "${PG_BIN:-}" ]; then
      BIN=$PG_BIN
    elif [ -f "$dir/PG_VERSION" ]; then
      BIN="/usr/lib/postgresql/$(cat "$dir/PG_VERSION")/bin"
    else
      BIN=/nonexistent
    fi
    "$command" "$dir"
    ;;
  *) usage ;;
esac
