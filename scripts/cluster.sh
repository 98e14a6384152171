#!/usr/bin/env bash
# Runs a three-node Chronicle cluster on one machine (make cluster).
#
# Builds bin/chronicle, starts n1..n3 with --bootstrap-expect 3, waits until each one
# serves, prints their URLs and the leader, and keeps running until Ctrl-C (or SIGTERM),
# which sends SIGTERM to every node and waits for each to exit cleanly. Running it again
# reuses the data directories: the nodes come back with their data and elect a leader.
#
# Node i (1..3) listens on HTTP HTTP_BASE+i-1, Raft RAFT_BASE+i-1 and NATS NATS_BASE+i-1,
# keeps its state in $DATA/n<i> (by default ./data-cluster/n<i>, apart from the
# ./data of `make run`) and logs to $DATA/n<i>.log (the previous run's log is
# kept as n<i>.log.prev). The nodes run with cluster TLS: a CA and a certificate per node
# are made once under $DATA/certs (chronicle certs cluster) and reused on every restart;
# Raft runs over mutual TLS and the APIs serve HTTPS. Authentication is on: an admin token
# is generated once into $DATA/admin.token (chronicle token generate; a restart keeps it)
# before the nodes start, every node gets --bootstrap-token-file with that one file, and
# the node that founds the cluster creates it as the token bootstrap-admin. Every request
# but /health, /ready, /openapi.json and /cluster/info then needs it (CHRONICLE_TOKEN or
# --token-file for the CLI, Authorization: Bearer for curl). Settings, from the
# environment (default in brackets):
#
#   DATA [./data-cluster]  HOST [127.0.0.1]  HTTP_BASE [4101]  RAFT_BASE [4201]  NATS_BASE [4301]
#   BIN [bin/chronicle]  BUILD [1] (0: use BIN as it is)  GO [go]
#   READY_WAIT [60] seconds for the cluster to form  STOP_WAIT [30] seconds per node to stop
#
# Arguments are passed to every `chronicle serve`, e.g. scripts/cluster.sh --log-level debug.
# Started in the background (cmd &), a script ignores SIGINT: stop it with SIGTERM then.
#
# A node killed by hand (to watch the others fail over) is not restarted by the script:
# it prints the exact command that restarts that node on its data, as it does for
# `scripts/cluster.sh restart-command N`, which prints it for node N and exits.

set -euo pipefail

cd "$(dirname "$0")/.."

DATA=${DATA:-./data-cluster}
HOST=${HOST:-127.0.0.1}
HTTP_BASE=${HTTP_BASE:-4101}
RAFT_BASE=${RAFT_BASE:-4201}
NATS_BASE=${NATS_BASE:-4301}
BIN=${BIN:-bin/chronicle}
BUILD=${BUILD:-1}
GO=${GO:-go}
READY_WAIT=${READY_WAIT:-60}
STOP_WAIT=${STOP_WAIT:-30}
NODES=3

restart_only=""
if [ "${1:-}" = restart-command ]; then
	restart_only=${2:-}
	shift 2 || true
fi
extra=("$@")
pids=()   # pids[i-1] is node n<i>'s process; "" once it has been reaped
sleeper=""

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

for v in HTTP_BASE RAFT_BASE NATS_BASE READY_WAIT STOP_WAIT; do
	case ${!v} in
	'' | *[!0-9]*) die "$v=${!v}: want a number" ;;
	esac
done

http_addr() { printf '%s:%d' "$HOST" $((HTTP_BASE + $1 - 1)); }
raft_addr() { printf '%s:%d' "$HOST" $((RAFT_BASE + $1 - 1)); }
nats_addr() { printf '%s:%d' "$HOST" $((NATS_BASE + $1 - 1)); }
node_url() { printf 'https://%s' "$(http_addr "$1")"; }
CERTS="$DATA/certs"
CA="$CERTS/ca.crt"
node_log() { printf '%s/n%d.log' "$DATA" "$1"; }
TOKEN="$DATA/admin.token"

join=""
for ((i = 1; i <= NODES; i++)); do
	join="$join${join:+,}$(node_url "$i")"
done

# serve_cmd i: sets serve_args to the command line that runs node n<i> (the same on its
# first start and on every restart).
serve_cmd() {
	local i=$1
	serve_args=("$BIN" serve --node-id "n$i" --data-dir "$DATA/n$i" --tls-ca "$CA" --tls-cert "$CERTS/n$i.crt" --tls-key "$CERTS/n$i.key"
		--bootstrap-token-file "$TOKEN" --http-addr "$(http_addr "$i")" --raft-addr "$(raft_addr "$i")" --nats-listen "$(nats_addr "$i")"
		--join "$join" --bootstrap-expect "$NODES" ${extra[@]+"${extra[@]}"})
}

# shell_line args...: the arguments as one line a shell reads back as they are (quoted
# only where needed).
shell_line() {
	local a out=""
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./:,=@%+-]+$ ]]; then
			out="$out${out:+ }$a"
		else
			out="$out${out:+ }$(printf '%q' "$a")"
		fi
	done
	printf '%s\n' "$out"
}

# restart_hint i: how to start node n<i> again by hand, on its data, while the others run.
restart_hint() {
	serve_cmd "$1"
	log "restart n$1 on its data (it rejoins the others) with:"
	printf '    %s' "$(shell_line "${serve_args[@]}")" >&2
	printf '\n' >&2
}

if [ -n "$restart_only" ]; then
	case $restart_only in
	[1-9]) [ "$restart_only" -le "$NODES" ] || die "restart-command $restart_only: want a node number from 1 to $NODES" ;;
	*) die "restart-command ${restart_only:-(none)}: want a node number from 1 to $NODES" ;;
	esac
	serve_cmd "$restart_only"
	shell_line "${serve_args[@]}"
	exit 0
fi

# log_tail i: the end of node n<i>'s log, indented.
log_tail() {
	log "last lines of $(node_log "$1"):"
	tail -n 25 "$(node_log "$1")" 2>/dev/null | sed 's/^/    /' >&2 || true
}

running() {
	local i
	for ((i = 0; i < ${#pids[@]}; i++)); do
		[ -n "${pids[i]}" ] && return 0
	done
	return 1
}

# reap i: collect the exit status of node n<i> (already exited or being stopped).
reap() {
	local i=$1 pid=${pids[$1 - 1]} status=0
	wait "$pid" 2>/dev/null || status=$?
	pids[i - 1]=""
	return "$status"
}

# stop_nodes: SIGTERM to every running node, then wait for each (SIGKILL after
# STOP_WAIT seconds). Fails when any node did not exit with status 0.
stop_nodes() {
	local i pid status rc=0 ticks
	if [ -n "$sleeper" ]; then
		kill "$sleeper" 2>/dev/null || true
	fi
	for ((i = 1; i <= ${#pids[@]}; i++)); do
		pid=${pids[i - 1]}
		if [ -n "$pid" ]; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for ((i = 1; i <= ${#pids[@]}; i++)); do
		pid=${pids[i - 1]}
		[ -n "$pid" ] || continue
		ticks=0
		while kill -0 "$pid" 2>/dev/null && [ "$ticks" -lt $((STOP_WAIT * 5)) ]; do
			sleep 0.2
			ticks=$((ticks + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "n$i did not stop within ${STOP_WAIT}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		status=0
		reap "$i" || status=$?
		if [ "$status" -eq 0 ]; then
			log "n$i stopped cleanly"
		else
			log "n$i exited with status $status"
			log_tail "$i"
			rc=1
		fi
	done
	return "$rc"
}

on_signal() {
	trap '' INT TERM
	printf '\n' >&2
	log "stopping the cluster"
	local rc=0
	stop_nodes || rc=$?
	trap - EXIT
	exit "$rc"
}

on_exit() {
	local rc=$?
	trap '' INT TERM
	if running; then
		log "stopping the nodes that are still running"
		stop_nodes || true
	fi
	exit "$rc"
}

trap on_signal INT TERM
trap on_exit EXIT

if [ "$BUILD" != 0 ]; then
	log "building $BIN"
	"$GO" build -o "$BIN" ./cmd/chronicle
fi
[ -x "$BIN" ] || die "$BIN is not an executable; build it (make build) or set BIN"

# Fail fast, and say which, when a port is taken (a node would die on it, or worse, the
# others would wait for it until READY_WAIT).
busy=""
for ((i = 1; i <= NODES; i++)); do
	for addr in "$(http_addr "$i")" "$(raft_addr "$i")" "$(nats_addr "$i")"; do
		if (: <"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
			busy="$busy $addr"
		fi
	done
done
if [ -n "$busy" ]; then
	die "already in use:$busy (another cluster running? or set HTTP_BASE, RAFT_BASE, NATS_BASE)"
fi

# The CA and node certificates, made once: a restart keeps the ones the nodes know.
cert_args=()
for ((i = 1; i <= NODES; i++)); do
	hosts="$HOST,localhost,n$i"
	[ "$HOST" = 127.0.0.1 ] || hosts="$hosts,127.0.0.1"
	cert_args+=(--node "n$i=$hosts")
done
"$BIN" certs cluster --out "$CERTS" "${cert_args[@]}" | sed 's/^/cluster: /' >&2 || die "could not make the certificates in $CERTS"

# The admin token, made once before any node starts (so no two nodes race to write it) and
# kept on restarts; the secret is not printed.
mkdir -p "$DATA"
"$BIN" token generate --out "$TOKEN" | sed 's/^/cluster: /' >&2 || die "could not make the admin token $TOKEN"

for ((i = 1; i <= NODES; i++)); do
	dir="$DATA/n$i"
	logf=$(node_log "$i")
	mkdir -p "$dir"
	if [ -f "$logf" ]; then
		mv -f "$logf" "$logf.prev"
	fi
	if [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
		state="restarting on its data"
	else
		state="new"
	fi
	log "starting n$i ($state) at $(node_url "$i"), raft $(raft_addr "$i"), nats $(nats_addr "$i"), data $dir"
	serve_cmd "$i"
	"${serve_args[@]}" >"$logf" 2>&1 &
	pids+=("$!")
done

# Each node prints "chronicle ... serving at URL" on stdout once it is ready; /ready is
# asked too, but only every 2 s, as each 503 it answers is logged.
have_curl=0
if command -v curl >/dev/null 2>&1; then
	have_curl=1
fi
ready=()
deadline=$((SECONDS + READY_WAIT))
for ((tick = 0; ; tick++)); do
	waiting=""
	for ((i = 1; i <= NODES; i++)); do
		[ "${ready[i - 1]:-0}" = 1 ] && continue
		if grep -q 'serving at' "$(node_log "$i")" 2>/dev/null; then
			ready[i - 1]=1
			continue
		fi
		if ! kill -0 "${pids[i - 1]}" 2>/dev/null; then
			status=0
			reap "$i" || status=$?
			log "n$i exited with status $status before the cluster was ready"
			log_tail "$i"
			exit 1
		fi
		if [ "$have_curl" = 1 ] && [ $((tick % 10)) = 9 ] &&
			curl -fsS -m 2 --cacert "$CA" -o /dev/null "$(node_url "$i")/ready" 2>/dev/null; then
			ready[i - 1]=1
			continue
		fi
		waiting="$waiting n$i"
	done
	[ -z "$waiting" ] && break
	if [ "$SECONDS" -ge "$deadline" ]; then
		log "not ready after ${READY_WAIT}s:$waiting"
		for n in $waiting; do
			log_tail "${n#n}"
			if [ "$have_curl" = 1 ]; then
				log "$n answers /ready: $(curl -sS -m 2 --cacert "$CA" "$(node_url "${n#n}")/ready" 2>&1 || true)"
			fi
		done
		exit 1
	fi
	sleep 0.2
done

# Followers register their API URLs with the leader within a couple of seconds, and the
# leader creates the bootstrap token; show the status once every member answers (or
# after 10 s, as it is).
status=""
for ((t = 0; t < 50; t++)); do
	status=$("$BIN" cluster status --url "$(node_url 1)" --cacert "$CA" --token-file "$TOKEN" 2>&1) || true
	if grep -q '^\*' <<<"$status" && ! grep -q 'unreachable' <<<"$status"; then
		break
	fi
	sleep 0.2
done
leader=$(awk '$1 == "*" { print $2 " at " $5; exit }' <<<"$status")

printf '\nChronicle cluster of %d nodes is up:\n' "$NODES"
for ((i = 1; i <= NODES; i++)); do
	printf '  n%d  %s   (raft %s, nats nats://%s, log %s)\n' "$i" "$(node_url "$i")" "$(raft_addr "$i")" "$(nats_addr "$i")" "$(node_log "$i")"
done
printf '\nleader: %s\n\n%s\n\n' "${leader:-unknown}" "$status"
printf 'TLS: Raft and the APIs use the CA and node certificates in %s.\n' "$CERTS"
printf 'Auth: every request but /health and /ready needs a token; the admin token (bootstrap-admin) is in %s.\n' "$TOKEN"
# shellcheck disable=SC2016 # $(cat ...) is for the reader's shell
printf 'Try: export CHRONICLE_TOKEN=$(cat %s) CHRONICLE_CACERT=%s\n' "$TOKEN" "$CA"
printf '     %s cluster status --url %s\n' "$BIN" "$(node_url 1)"
# shellcheck disable=SC2016
printf '     curl --cacert %s -H "Authorization: Bearer $(cat %s)" %s/accounts\n' "$CA" "$TOKEN" "$(node_url 1)"
printf "     curl --cacert %s -H \"Authorization: Bearer \$(cat %s)\" --json '{\"account_id\":\"alice\",\"owner_name\":\"Alice\",\"initial_balance\":\"100\"}' %s/commands/create-account\n" "$CA" "$TOKEN" "$(node_url 1)"
printf '     %s token create --url %s --name teller --role writer    # prints a writer token once\n' "$BIN" "$(node_url 1)"
printf '     membership changes need the admin token or a node certificate: %s cluster remove --url %s ID\n' "$BIN" "$(node_url 1)"
printf 'Ctrl-C stops all three nodes; run it again to restart them on their data.\n'

# Wait until interrupted, reporting any node that exits on its own (the others keep
# running, so a node can be killed by hand to watch the cluster fail over).
while :; do
	sleep 1 &
	sleeper=$!
	wait "$sleeper" 2>/dev/null || true
	sleeper=""
	for ((i = 1; i <= NODES; i++)); do
		pid=${pids[i - 1]}
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			status=0
			reap "$i" || status=$?
			log "n$i exited on its own with status $status"
			log_tail "$i"
			restart_hint "$i"
		fi
	done
	running || die "every node has exited"
done
