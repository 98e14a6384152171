#!/usr/bin/env bash
# Runs the SQL topology of deploy/compose/sql.yml as processes on this machine (make sql-demo):
# the local PostgreSQL stands in for CockroachDB (event store) and holds the read model,
# two command processes take commands and a query process serves reads.
#
# Builds bin/chronicle, creates the databases ES_DB and RM_DB on PostgreSQL if they do not
# exist (RESET=1 drops them first), starts the three processes, waits until each serves,
# prints their URLs and keeps running until Ctrl-C (or SIGTERM), which sends SIGTERM to
# every process and waits for each to exit cleanly. Running it again keeps the databases:
# the processes come back on the same log and read model.
#
# NATS: the server at NATS_URL when it answers (the command processes publish to it under
# their lease, one at a time); else each command process publishes into an embedded
# server of its own (state under $DATA/sql-demo/<name>). NATS_URL=none forces that. When
# the event store is new (first run or RESET=1) and NATS_URL answers, its stream
# CHRONICLE_EVENTS is deleted, so that stream and log start together.
#
# Authentication is on: an admin token is generated once into $DATA/sql-demo/admin.token
# (chronicle token generate; kept across runs, RESET=1 included) before the processes
# start, and every process gets --bootstrap-token-file with that one file; the first to
# reach the event store creates it as the token bootstrap-admin in the shared table
# chronicle_tokens (again after RESET=1). Every request but /health, /ready,
# /openapi.json and the dashboard's files then needs it: CHRONICLE_TOKEN or --token-file
# for the CLI, Authorization: Bearer for curl.
#
# Settings, from the environment (default in brackets):
#
#   PG [postgres://postgres@127.0.0.1:5432]  PG_PARAMS [sslmode=disable]
#   ES_DB [chronicle_demo_es]  RM_DB [chronicle_demo_read]  RESET [0]
#   NATS_URL [nats://127.0.0.1:4222]  HOST [127.0.0.1]
#   QUERY_PORT [4001]  COMMAND1_PORT [4002]  COMMAND2_PORT [4003]  (0, or a port in use: the OS picks one)
#   DATA [./data]  BIN [bin/chronicle]  BUILD [1] (0: use BIN as it is)  GO [go]
#   READY_WAIT [60] seconds for the processes to serve  STOP_WAIT [30] seconds per process to stop
#
# Arguments are passed to every `chronicle serve`, e.g. scripts/sql-demo.sh --log-level debug.
# Needs psql (the PostgreSQL client) to create the databases. Started in the background
# (cmd &), a script ignores SIGINT: stop it with SIGTERM then.

set -euo pipefail

cd "$(dirname "$0")/.."

PG=${PG:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${PG_PARAMS:-sslmode=disable}
ES_DB=${ES_DB:-chronicle_demo_es}
RM_DB=${RM_DB:-chronicle_demo_read}
RESET=${RESET:-0}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
HOST=${HOST:-127.0.0.1}
QUERY_PORT=${QUERY_PORT:-4001}
COMMAND1_PORT=${COMMAND1_PORT:-4002}
COMMAND2_PORT=${COMMAND2_PORT:-4003}
DATA=${DATA:-./data}
BIN=${BIN:-bin/chronicle}
BUILD=${BUILD:-1}
GO=${GO:-go}
READY_WAIT=${READY_WAIT:-60}
STOP_WAIT=${STOP_WAIT:-30}

extra=("$@")
names=(query command-1 command-2)
pids=() # pids[i] is names[i]'s process; "" once it has been reaped
urls=()
sleeper=""
dir="$DATA/sql-demo"
TOKEN="$dir/admin.token"

log() { printf 'sql-demo: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

for v in QUERY_PORT COMMAND1_PORT COMMAND2_PORT READY_WAIT STOP_WAIT; do
	case ${!v} in
	'' | *[!0-9]*) die "$v=${!v}: want a number" ;;
	esac
done
for v in ES_DB RM_DB; do
	case ${!v} in
	'' | *[!a-z0-9_]*) die "$v=${!v}: want a database name of a-z, 0-9 and _" ;;
	esac
done

db_url() { printf '%s/%s?%s' "$PG" "$1" "$PG_PARAMS"; }
proc_log() { printf '%s/%s.log' "$dir" "$1"; }

# log_tail i: the end of process i's log, indented.
log_tail() {
	log "last lines of $(proc_log "${names[$1]}"):"
	tail -n 25 "$(proc_log "${names[$1]}")" 2>/dev/null | sed 's/^/    /' >&2 || true
}

running() {
	local i
	for ((i = 0; i < ${#pids[@]}; i++)); do
		[ -n "${pids[i]}" ] && return 0
	done
	return 1
}

# reap i: collect the exit status of process i (already exited or being stopped).
reap() {
	local i=$1 pid=${pids[$1]} status=0
	wait "$pid" 2>/dev/null || status=$?
	pids[i]=""
	return "$status"
}

# stop_all: SIGTERM to every running process, then wait for each (SIGKILL after
# STOP_WAIT seconds). Fails when any did not exit with status 0.
stop_all() {
	local i pid status rc=0 ticks
	if [ -n "$sleeper" ]; then
		kill "$sleeper" 2>/dev/null || true
	fi
	for ((i = 0; i < ${#pids[@]}; i++)); do
		pid=${pids[i]}
		if [ -n "$pid" ]; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for ((i = 0; i < ${#pids[@]}; i++)); do
		pid=${pids[i]}
		[ -n "$pid" ] || continue
		ticks=0
		while kill -0 "$pid" 2>/dev/null && [ "$ticks" -lt $((STOP_WAIT * 5)) ]; do
			sleep 0.2
			ticks=$((ticks + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "${names[i]} did not stop within ${STOP_WAIT}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		status=0
		reap "$i" || status=$?
		if [ "$status" -eq 0 ]; then
			log "${names[i]} stopped cleanly"
		else
			log "${names[i]} exited with status $status"
			log_tail "$i"
			rc=1
		fi
	done
	return "$rc"
}

on_signal() {
	trap '' INT TERM
	printf '\n' >&2
	log "stopping the SQL topology"
	local rc=0
	stop_all || rc=$?
	trap - EXIT
	exit "$rc"
}

on_exit() {
	local rc=$?
	trap '' INT TERM
	if running; then
		log "stopping the processes that are still running"
		stop_all || true
	fi
	exit "$rc"
}

trap on_signal INT TERM
trap on_exit EXIT

# answers host:port: something accepts TCP connections there.
answers() { (: <"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# nats_delete_stream host:port name: deletes a JetStream stream over the NATS protocol
# (no NATS client needed); says what the server answered.
nats_delete_stream() {
	local addr=$1 stream=$2 line reply=""
	exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || return 1
	IFS= read -r -t 5 line <&3 || true # INFO
	printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.sqldemo 1\r\nPUB $JS.API.STREAM.DELETE.%s _INBOX.sqldemo 0\r\n\r\n' "$stream" >&3
	while IFS= read -r -t 5 line <&3; do
		line=${line%$'\r'}
		case $line in
		PING) printf 'PONG\r\n' >&3 ;;
		MSG*)
			IFS= read -r -t 5 reply <&3 || true
			break
			;;
		-ERR*)
			reply=$line
			break
			;;
		esac
	done
	exec 3>&- 3<&-
	case $reply in
	*'"success":true'*) log "deleted the NATS stream $stream at $addr (a new log starts a new stream)" ;;
	*'"err_code":10059'*) log "no NATS stream $stream at $addr yet" ;;
	'') log "NATS at $addr did not answer the deletion of $stream; if publishing stalls, delete the stream by hand" ;;
	*) log "NATS at $addr answered the deletion of $stream with: ${reply%$'\r'}" ;;
	esac
}

if [ "$BUILD" != 0 ]; then
	log "building $BIN"
	"$GO" build -o "$BIN" ./cmd/chronicle
fi
[ -x "$BIN" ] || die "$BIN is not an executable; build it (make build) or set BIN"
command -v psql >/dev/null 2>&1 || die "psql (the PostgreSQL client) is needed to create the databases"

admin="$(db_url postgres)"
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -At "$admin" "$@"; }
psql_admin -c 'SELECT 1' >/dev/null || die "PostgreSQL at $PG does not answer (set PG)"

if [ "$RESET" = 1 ]; then
	for db in "$ES_DB" "$RM_DB"; do
		log "RESET=1: dropping database $db"
		psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
	done
fi
fresh=0
for db in "$ES_DB" "$RM_DB"; do
	if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ]; then
		log "database $db exists: keeping it (RESET=1 starts over)"
	else
		log "creating database $db"
		psql_admin -c "CREATE DATABASE $db"
		if [ "$db" = "$ES_DB" ]; then
			fresh=1
		fi
	fi
done

nats_args=()
nats_note="embedded NATS per command process (state under $dir/command-N/nats)"
if [ "$NATS_URL" != none ]; then
	hostport=${NATS_URL#nats://}
	hostport=${hostport%%/*}
	if answers "$hostport"; then
		nats_args=(--nats-url "$NATS_URL")
		nats_note="$NATS_URL (stream CHRONICLE_EVENTS, one publisher at a time under the lease)"
		if [ "$fresh" = 1 ]; then
			nats_delete_stream "$hostport" CHRONICLE_EVENTS || log "could not reach NATS at $hostport to reset its stream"
		fi
	else
		log "no NATS answers at $NATS_URL: each command process embeds its own"
	fi
fi

# port_for name port: the port to listen on; 0 (the OS picks) when the port is taken.
port_for() {
	if [ "$2" != 0 ] && answers "$HOST:$2"; then
		log "$1: port $2 is in use; the OS picks a free one"
		echo 0
	else
		echo "$2"
	fi
}

ports=("$(port_for query "$QUERY_PORT")" "$(port_for command-1 "$COMMAND1_PORT")" "$(port_for command-2 "$COMMAND2_PORT")")
roles=(query command command)
es_url=$(db_url "$ES_DB")
rm_url=$(db_url "$RM_DB")
mkdir -p "$dir"

# The admin token, made once before any process starts and kept afterwards; the secret is
# not printed.
"$BIN" token generate --out "$TOKEN" | sed 's/^/sql-demo: /' >&2 || die "could not make the admin token $TOKEN"

for ((i = 0; i < 3; i++)); do
	name=${names[i]}
	logf=$(proc_log "$name")
	if [ -f "$logf" ]; then
		mv -f "$logf" "$logf.prev"
	fi
	args=(serve --store sql --role "${roles[i]}" --node-id "$name" --event-store "$es_url"
		--http-addr "$HOST:${ports[i]}" --data-dir "$dir/$name" --bootstrap-token-file "$TOKEN"
		${nats_args[@]+"${nats_args[@]}"})
	if [ "${roles[i]}" = query ]; then
		args+=(--read-model "$rm_url")
	fi
	log "starting $name (--role ${roles[i]}) on $HOST:${ports[i]}, log $logf"
	"$BIN" "${args[@]}" ${extra[@]+"${extra[@]}"} >"$logf" 2>&1 &
	pids+=("$!")
done

# Each process prints "chronicle ... serving at URL" on stdout once its event store answers.
deadline=$((SECONDS + READY_WAIT))
while :; do
	waiting=""
	for ((i = 0; i < 3; i++)); do
		[ -n "${urls[i]:-}" ] && continue
		u=$(sed -n 's/.*serving at \(http:\/\/[^ ]*\).*/\1/p' "$(proc_log "${names[i]}")" 2>/dev/null | head -n 1)
		if [ -n "$u" ]; then
			urls[i]=$u
			continue
		fi
		if ! kill -0 "${pids[i]}" 2>/dev/null; then
			status=0
			reap "$i" || status=$?
			log "${names[i]} exited with status $status before serving"
			log_tail "$i"
			exit 1
		fi
		waiting="$waiting ${names[i]}"
	done
	[ -z "$waiting" ] && break
	if [ "$SECONDS" -ge "$deadline" ]; then
		log "not serving after ${READY_WAIT}s:$waiting"
		for ((i = 0; i < 3; i++)); do
			[ -z "${urls[i]:-}" ] && log_tail "$i"
		done
		exit 1
	fi
	sleep 0.2
done

q=${urls[0]} c1=${urls[1]} c2=${urls[2]}
auth="-H \"Authorization: Bearer \$(cat $TOKEN)\""
cat <<EOF

Chronicle SQL topology is up (event store $es_url, read model $rm_url):
  query      $q   reads, /events, the SSE stream, the dashboard (--role query)
  command-1  $c1   commands (--role command)
  command-2  $c2   commands (--role command), the same event store
  NATS       $nats_note
  logs       $dir/*.log
  admin token  $TOKEN (bootstrap-admin): every request but /health and /ready needs a token

Try:
  export CHRONICLE_TOKEN=\$(cat $TOKEN)
  curl -s -XPOST -H 'Content-Type: application/json' $auth $c1/commands/create-account -d '{"account_id":"A","owner_name":"Alice","initial_balance":0,"currency":"USD"}'
  curl -s -XPOST -H 'Content-Type: application/json' $auth $c2/commands/deposit -d '{"account_id":"A","amount":1000}'     # answers its "position"
  curl -s $auth "$q/accounts/A?min_position=<position>"
  $BIN verify --url $q --token-file $TOKEN --read-model '$rm_url'
  $BIN token create --url $c1 --name teller --role writer    # prints a writer token once

Ctrl-C stops all three; run it again to restart them on the same databases (RESET=1 to start over).
EOF

# Wait until interrupted, reporting any process that exits on its own (the others keep
# running, so a command process can be killed by hand to watch the other carry on).
while :; do
	sleep 1 &
	sleeper=$!
	wait "$sleeper" 2>/dev/null || true
	sleeper=""
	for ((i = 0; i < 3; i++)); do
		pid=${pids[i]}
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			status=0
			reap "$i" || status=$?
			log "${names[i]} exited on its own with status $status"
			log_tail "$i"
		fi
	done
	running || die "every process has exited"
done
