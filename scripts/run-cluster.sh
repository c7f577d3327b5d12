#!/usr/bin/env bash
# Starts a local coordd cluster on loopback and supervises it, like a small
# service manager. Used by `make run` (NODES=1 for one node) and, with TLS=1
# ACL=1, `make run-tls`.
#
#   NODES=3                    how many nodes (HTTP_PORTS and RAFT_PORTS, when
#                              given, set it: one port of each per node)
#   HTTP_PORTS="7101 7102 7103" RAFT_PORTS="7201 7202 7203"
#   DATA_DIR=./data  COORDD=./bin/coordd  HOST=127.0.0.1
#   TLS=1: mutual TLS between nodes and https, with certificates that
#          `coordd certs` writes into TLS_DIR (default $DATA_DIR/tls) once
#   ACL=1: access control (-acl) on every node; the first start bootstraps it
#          with coordctl and keeps the management secret in
#          $DATA_DIR/management.token (COORDCTL=./bin/coordctl)
#   EXTRA_FLAGS="...": more coordd flags for every node
#   RESTART_DELAY=3: seconds before a node that died is restarted
#   MAX_RESTARTS=20: restarts per node at most (0: never restart)
#
# What it promises:
# - Ports that are taken make it fail at once, naming them and the process
#   that holds each, before anything starts.
# - SIGINT (Ctrl-C), SIGTERM or SIGHUP to this script stop every node within
#   2 s: SIGUSR2 to each, which coordd takes as "the whole cluster is
#   stopping" (no leadership handover to a peer that is stopping too; the
#   leader goes first, so no node logs errors about the others), then
#   SIGTERM to a node still running after 1.5 s and SIGKILL after 1.9 s.
#   The nodes run in process groups of their own, so that a terminal's
#   signals reach only this script, which orders the stop.
# - `make run` runs it with exec, so make's SIGTERM (which make passes to its
#   child) reaches it; SIGINT and SIGHUP sent to make alone are not passed
#   on (make waits for its child instead), so it watches make and stops when
#   make has taken one of them (watch_parent). If this script is killed
#   outright, each node gets SIGUSR2 from the kernel (setpriv --pdeathsig,
#   where util-linux has it).
# - A node that dies is restarted from its data dir after RESTART_DELAY
#   seconds, and why it died is printed here. One that dies within 10 s of
#   its start 3 times in a row (or has used MAX_RESTARTS) is not restarted
#   again; when no node is left, the script exits 1.
set -euo pipefail

if ((BASH_VERSINFO[0] < 5)); then
	echo "run-cluster: needs bash 5 or later (this is $BASH_VERSION)" >&2
	exit 2
fi

COORDD=${COORDD:-./bin/coordd}
HOST=${HOST:-127.0.0.1}
DATA_DIR=${DATA_DIR:-./data}
TLS=${TLS:-0}
TLS_DIR=${TLS_DIR:-$DATA_DIR/tls}
ACL=${ACL:-0}
COORDCTL=${COORDCTL:-$(dirname "$COORDD")/coordctl}
TOKEN_FILE="$DATA_DIR/management.token"
RESTART_DELAY=${RESTART_DELAY:-3}
MAX_RESTARTS=${MAX_RESTARTS:-20}
MIN_UPTIME=10   # seconds: a node that dies sooner failed to start
MAX_FAST_FAILS=3
read -r -a extra_flags <<<"${EXTRA_FLAGS:-}"
if [ "$ACL" = 1 ]; then extra_flags+=(-acl); fi

read -r -a http_ports <<<"${HTTP_PORTS:-}"
read -r -a raft_ports <<<"${RAFT_PORTS:-}"
n=${NODES:-${#http_ports[@]}}
if [ "$n" = 0 ]; then n=3; fi
if ! [[ "$n" =~ ^[1-9]$ ]]; then
	echo "run-cluster: NODES must be a number of nodes from 1 to 9, not '$n'" >&2
	exit 2
fi
if [ ${#http_ports[@]} -eq 0 ]; then for ((i = 1; i <= n; i++)); do http_ports+=($((7100 + i))); done; fi
if [ ${#raft_ports[@]} -eq 0 ]; then for ((i = 1; i <= n; i++)); do raft_ports+=($((7200 + i))); done; fi
if [ "${#http_ports[@]}" -ne "$n" ] || [ "${#raft_ports[@]}" -ne "$n" ]; then
	echo "run-cluster: HTTP_PORTS and RAFT_PORTS must each list $n ports, one per node (NODES=$n)" >&2
	exit 2
fi
nodes=()
for ((i = 0; i < n; i++)); do nodes+=("$i"); done

scheme=http
curl_tls=()
if [ "$TLS" = 1 ]; then
	scheme=https
	curl_tls=(--cacert "$TLS_DIR/ca.pem")
fi

# --- ports ---

# listening_ports prints those of the ports given that something on this
# machine listens on. Linux's /proc/net/tcp says so without connecting (a
# connection would make the node that owns the port log it) and in one
# process (a busy machine makes each fork slow); elsewhere, try to connect.
listening_ports() {
	if [ -r /proc/net/tcp ]; then
		local tables=(/proc/net/tcp)
		if [ -r /proc/net/tcp6 ]; then tables+=(/proc/net/tcp6); fi
		awk -v want="$*" 'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ask[sprintf("%04X", w[i])] = w[i] }
			FNR > 1 && $4 == "0A" { split($2, a, ":"); if ((a[2] in ask) && !seen[a[2]]++) print ask[a[2]] }' "${tables[@]}"
		return
	fi
	local p
	for p in "$@"; do
		if (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then echo "$p"; fi
	done
}

# holders prints "PORT PID" for every listening socket, as ss or lsof
# tell (nothing if neither is installed).
holders() {
	if command -v ss >/dev/null 2>&1; then
		ss -Hltnp 2>/dev/null | awk '{ n = split($4, a, ":"); port = a[n]
			while (match($0, /pid=[0-9]+/)) { print port, substr($0, RSTART + 4, RLENGTH - 4); $0 = substr($0, RSTART + RLENGTH) } }'
	elif command -v lsof >/dev/null 2>&1; then
		lsof -nP -iTCP -sTCP:LISTEN -Fpn 2>/dev/null | awk '/^p/ { pid = substr($0, 2) } /^n/ { n = split($0, a, ":"); print a[n], pid }'
	fi
}

check_ports() {
	local want=() i
	for i in "${nodes[@]}"; do want+=("${http_ports[$i]}" "${raft_ports[$i]}"); done
	local taken
	taken=$(listening_ports "${want[@]}")
	[ -z "$taken" ] && return 0
	# Who holds them: one ss (or lsof) and one ps for all.
	local -A pids_of=() args_of=()
	local port pid line all=""
	while read -r port pid; do
		[ -n "$pid" ] || continue
		case " ${pids_of[$port]:-} " in *" $pid "*) ;; *) pids_of[$port]+="$pid " all+="$pid," ;; esac
	done <<<"$(holders)"
	if [ -n "$all" ]; then
		while read -r pid line; do args_of[$pid]=${line:0:100}; done <<<"$(ps -o pid=,args= -p "${all%,}" 2>/dev/null || true)"
	fi
	{
		echo "run-cluster: cannot start: ports already in use on $HOST:"
		for i in "${nodes[@]}"; do
			for port in "${http_ports[$i]}:HTTP" "${raft_ports[$i]}:Raft"; do
				[[ $'\n'$taken$'\n' == *$'\n'${port%%:*}$'\n'* ]] || continue
				line=""
				for pid in ${pids_of[${port%%:*}]:-}; do line+="${line:+, }pid $pid (${args_of[$pid]:-?})"; done
				echo "  ${HOST}:${port%%:*} (${port#*:} of n$((i + 1))): held by ${line:-a process this script cannot name (try: ss -ltnp)}"
			done
		done
		local alt_http="" alt_raft=""
		for ((i = 1; i <= n; i++)); do alt_http+="${alt_http:+ }$((8100 + i))" alt_raft+="${alt_raft:+ }$((8200 + i))"; done
		echo "Is another 'make run' running? Stop it, or choose other ports, e.g."
		echo "  make run HTTP_PORTS=\"$alt_http\" RAFT_PORTS=\"$alt_raft\""
	} >&2
	exit 1
}
check_ports

# --- nodes ---

peers=""
for i in "${nodes[@]}"; do
	peers+="n$((i + 1))=${HOST}:${raft_ports[$i]},${HOST}:${http_ports[$i]};"
done

# With util-linux's setpriv, a node gets SIGUSR2 (a stop of the whole
# cluster) from the kernel if this script dies without stopping it.
launcher=()
if command -v setpriv >/dev/null 2>&1 && setpriv --help 2>&1 | grep -q pdeathsig; then
	launcher=(setpriv --pdeathsig USR2)
fi

pids=()     # pid of each node ("" once it is given up)
started=()  # when it was last started (ms)
log_off=()  # size of its log file when it was started
fails=()    # how many times in a row it died within MIN_UPTIME
restarts=() # how many times it was restarted
restart_at=() # when to restart it (ms; 0: not waiting)
for i in "${nodes[@]}"; do fails[$i]=0 restarts[$i]=0 restart_at[$i]=0; done

now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
log_of() { echo "$DATA_DIR/n$(($1 + 1)).log"; }

start_node() {
	local i=$1 id="n$(($1 + 1))" log
	log=$(log_of "$i")
	local tls_flags=()
	if [ "$TLS" = 1 ]; then
		tls_flags=(-tls-cert "$TLS_DIR/$id.pem" -tls-key "$TLS_DIR/$id-key.pem" -tls-ca "$TLS_DIR/ca.pem")
	fi
	log_off[$i]=$(stat -c %s "$log" 2>/dev/null || echo 0)
	started[$i]=$(now_ms)
	set -m # a process group of its own: the terminal's signals are for this script
	${launcher[@]+"${launcher[@]}"} "$COORDD" -id "$id" -data-dir "$DATA_DIR/$id" \
		-raft-addr "${HOST}:${raft_ports[$i]}" -http-addr "${HOST}:${http_ports[$i]}" \
		-bootstrap "$peers" ${tls_flags[@]+"${tls_flags[@]}"} ${extra_flags[@]+"${extra_flags[@]}"} \
		>>"$log" 2>&1 &
	pids[$i]=$!
	set +m
}

# since_start prints what node $1 logged since its last start.
since_start() { tail -c +$((log_off[$1] + 1)) "$(log_of "$1")" 2>/dev/null || true; }

# reason prints why node $1 stopped: its last error lines since it started,
# or its last lines.
reason() {
	local out
	out=$(since_start "$1" | grep -E '\[ERROR\]|"@level":"error"|^panic:|^fatal error:' | tail -n 3 || true)
	[ -n "$out" ] || out=$(since_start "$1" | tail -n 3)
	sed 's/^/    /' <<<"$out"
}

alive() { [ -n "${pids[$1]:-}" ] && kill -0 "${pids[$1]}" 2>/dev/null; }

# --- stopping ---

stopping=0
stop() {
	[ "$stopping" = 1 ] && return
	stopping=1
	trap '' INT TERM HUP
	local t0 i left=() code
	t0=$(now_ms)
	for i in "${nodes[@]}"; do alive "$i" && left+=("$i"); done
	if [ ${#left[@]} -eq 0 ]; then
		return
	fi
	echo
	echo "stopping the cluster: SIGUSR2 to every node (a stop of the whole cluster: no leadership handover)"
	for i in "${left[@]}"; do kill -USR2 "${pids[$i]}" 2>/dev/null || true; done
	local termed=0 killed=0 waited
	while :; do
		left=()
		for i in "${nodes[@]}"; do alive "$i" && left+=("$i"); done
		[ ${#left[@]} -eq 0 ] && break
		waited=$(($(now_ms) - t0))
		if [ "$waited" -ge 1900 ] && [ "$killed" = 0 ]; then
			killed=1
			for i in "${left[@]}"; do
				echo "node n$((i + 1)) (pid ${pids[$i]}) still running after ${waited} ms: SIGKILL" >&2
				kill -KILL "${pids[$i]}" 2>/dev/null || true
			done
		elif [ "$waited" -ge 1500 ] && [ "$termed" = 0 ]; then
			termed=1
			for i in "${left[@]}"; do
				echo "node n$((i + 1)) (pid ${pids[$i]}) still running after ${waited} ms: SIGTERM" >&2
				kill -TERM "${pids[$i]}" 2>/dev/null || true
			done
		fi
		sleep 0.02
	done
	for i in "${nodes[@]}"; do
		[ -n "${pids[$i]:-}" ] || continue
		code=0
		wait "${pids[$i]}" 2>/dev/null || code=$?
		if [ "$code" != 0 ] && [ "$code" != 127 ]; then
			echo "node n$((i + 1)) exited with status $code:" >&2
			reason "$i" >&2
		fi
	done
	echo "all nodes stopped in $(($(now_ms) - t0)) ms (data kept in ${DATA_DIR}; 'make clean' removes it)"
}
on_signal() {
	stop
	exit $((128 + $1))
}
trap 'on_signal 2' INT
trap 'on_signal 15' TERM
trap 'on_signal 1' HUP
trap stop EXIT

# watch_parent returns 1 when whoever started this script is gone, or, if
# that is make, when make took SIGINT, SIGHUP, SIGTERM or SIGQUIT: GNU make
# passes only SIGTERM on to its child and waits for it, and it resets the
# handler of the signal it took, which /proc shows (SigCgt).
parent=$PPID
parent_is_make=0
parent_caught=""
case "$(<"/proc/$parent/comm")" in
make | gmake)
	parent_is_make=1
	parent_caught=$(awk '/^SigCgt:/{print $2}' "/proc/$parent/status" 2>/dev/null || true)
	;;
esac
watch_parent() {
	kill -0 "$parent" 2>/dev/null || return 1
	[ "$(awk '{print $4}' /proc/$$/stat 2>/dev/null || echo "$parent")" = "$parent" ] || return 1
	if [ "$parent_is_make" = 1 ] && [ -n "$parent_caught" ]; then
		local now fatal=$(((1 << 0) | (1 << 1) | (1 << 2) | (1 << 14))) # HUP INT QUIT TERM
		now=$(awk '/^SigCgt:/{print $2}' "/proc/$parent/status" 2>/dev/null || echo "$parent_caught")
		if (((0x$parent_caught & fatal) & ~(0x$now & fatal))); then return 1; fi
	fi
	return 0
}

# --- start ---

# The nodes keep their peers' Raft addresses in their data dirs: a data dir
# made with other ports or another number of nodes cannot form a cluster.
mkdir -p "$DATA_DIR"
if [ -s "$DATA_DIR/peers" ] && [ "$(<"$DATA_DIR/peers")" != "$peers" ]; then
	{
		echo "run-cluster: $DATA_DIR holds a cluster of other nodes or ports:"
		echo "  it was made for   $(<"$DATA_DIR/peers")"
		echo "  this run wants    $peers"
		echo "Remove it ('make clean', or rm -r $DATA_DIR), or give this run another DATA_DIR=..."
	} >&2
	exit 1
fi
echo "$peers" >"$DATA_DIR/peers"
if [ "$TLS" = 1 ] && [ ! -f "$TLS_DIR/ca.pem" ]; then
	names=$(for i in "${nodes[@]}"; do printf 'n%d,' $((i + 1)); done)
	# Once: a cluster CA, a certificate per node and a client certificate (no openssl).
	"$COORDD" certs -dir "$TLS_DIR" -nodes "${names%,}" -hosts "${HOST},localhost,127.0.0.1,::1" >/dev/null
	echo "wrote a cluster CA and certificates into $TLS_DIR (coordd certs)"
fi
for i in "${nodes[@]}"; do start_node "$i"; done

# Wait until every node has bound its ports (its log says it started: from
# then on the ports are its own, not another cluster's) and is ready (it
# knows a leader and has caught up).
for i in "${nodes[@]}"; do
	for ((tries = 0; ; tries++)); do
		if ! alive "$i"; then
			echo "run-cluster: node n$((i + 1)) exited while starting; from its log ($(log_of "$i")):" >&2
			reason "$i" >&2
			exit 1
		fi
		if since_start "$i" | grep -q 'coordd node started' &&
			curl -fs ${curl_tls[@]+"${curl_tls[@]}"} "${scheme}://${HOST}:${http_ports[$i]}/readyz" >/dev/null 2>&1; then
			break
		fi
		if [ "$tries" -eq 300 ]; then
			echo "run-cluster: node n$((i + 1)) is not ready after 30 s; going on (see $(log_of "$i"))" >&2
			break
		fi
		sleep 0.1
	done
done

auth=()
if [ "$ACL" = 1 ]; then
	if [ ! -s "$TOKEN_FILE" ]; then
		# Once: the first management token, its secret kept in a 0600 file.
		ctl_tls=()
		if [ "$TLS" = 1 ]; then ctl_tls=(-ca "$TLS_DIR/ca.pem"); fi
		eps=$(for i in "${nodes[@]}"; do printf '%s://%s:%s,' "$scheme" "$HOST" "${http_ports[$i]}"; done)
		"$COORDCTL" -endpoints "${eps%,}" ${ctl_tls[@]+"${ctl_tls[@]}"} acl bootstrap -secret-file "$TOKEN_FILE" >/dev/null
		echo "ACLs bootstrapped: the management token's secret is in $TOKEN_FILE"
	fi
	auth=(-H "Authorization: Bearer $(cat "$TOKEN_FILE")")
fi
leader=$(curl -fs ${curl_tls[@]+"${curl_tls[@]}"} ${auth[@]+"${auth[@]}"} "${scheme}://${HOST}:${http_ports[0]}/v1/status" |
	sed -n 's/.*"leader":{"id":"\([^"]*\)".*/\1/p' || true)
table="" mtls=""
if [ "$TLS" = 1 ]; then mtls=" (mutual TLS)"; fi
for i in "${nodes[@]}"; do
	table+="  n$((i + 1))  ${scheme}://${HOST}:${http_ports[$i]}  raft ${HOST}:${raft_ports[$i]}${mtls}  pid ${pids[$i]}
"
done
eps=$(for i in "${nodes[@]}"; do printf '%s:%s,' "$HOST" "${http_ports[$i]}"; done)
eps=${eps%,}
if [ "$n" = 1 ]; then what="1-node cluster"; else what="$n-node cluster"; fi
if [ "$TLS" = 1 ]; then
	h="" ctok="" acl_note=""
	if [ "$ACL" = 1 ]; then
		h="-H \"Authorization: Bearer \$(cat ${TOKEN_FILE})\" "
		ctok="-token-file ${TOKEN_FILE} "
		acl_note="ACLs on: requests need a token (management secret in ${TOKEN_FILE}); without one: 401.
"
	fi
	p1=${http_ports[$((n > 1 ? 1 : 0))]}
	cat <<MSG
coordd ${what} running with TLS (leader: ${leader:-electing}); logs in ${DATA_DIR}/n*.log
${table}Certificates in ${TLS_DIR} (CA ca.pem; node n1.pem...; client.pem for tools).
${acl_note}
Try:
  curl -s --cacert ${TLS_DIR}/ca.pem ${h}https://${HOST}:${p1}/v1/status
  curl -s --cacert ${TLS_DIR}/ca.pem ${h}-X PUT --data-binary 'hello' https://${HOST}:${p1}/v1/kv/greeting
  curl -s --cacert ${TLS_DIR}/ca.pem --cert ${TLS_DIR}/client.pem --key ${TLS_DIR}/client-key.pem ${h}'https://${HOST}:${http_ports[0]}/v1/kv/greeting?raw'
  curl -s --cacert ${TLS_DIR}/ca.pem https://${HOST}:${p1}/v1/kv/greeting    # no token: refused when ACLs are on
  curl -s http://${HOST}:${p1}/v1/status    # plaintext: refused (400)
  bin/coordctl -endpoints ${eps//${HOST}/https://${HOST}} -ca ${TLS_DIR}/ca.pem ${ctok}status
  kill -HUP ${pids[0]}    # n1 re-reads its certificate files (see ${DATA_DIR}/n1.log)
Web console (any node; trust ${TLS_DIR}/ca.pem, paste the token): https://${HOST}:${http_ports[0]}/ui/
A node that dies is restarted from its data dir after ${RESTART_DELAY}s.
Ctrl-C (or SIGTERM to make or to this script, pid $$) stops every node.
MSG
else
	ctl="bin/coordctl"
	[ "$eps" = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103" ] || ctl="COORDCTL_ENDPOINTS=$eps bin/coordctl"
	cat <<MSG
coordd ${what} running (leader: ${leader:-electing}); logs in ${DATA_DIR}/n*.log
${table}
Try:
  curl -s http://${HOST}:${http_ports[0]}/v1/status
  curl -s -X PUT --data-binary 'hello' http://${HOST}:${http_ports[0]}/v1/kv/greeting
  curl -s 'http://${HOST}:${http_ports[$((n - 1))]}/v1/kv/greeting?raw'
  ${ctl} status    # the command-line client (make build puts it in bin/)
Kill the leader, and only it: its own /v1/status gives its pid.
  LEADER=\$(curl -s http://${HOST}:${http_ports[0]}/v1/status | jq -r .leader.http_addr)
  kill -9 "\$(curl -s "http://\$LEADER/v1/status" | jq .pid)"
Web console (any node): http://${HOST}:${http_ports[0]}/ui/
A node that dies is restarted from its data dir after ${RESTART_DELAY}s.
Ctrl-C (or SIGTERM to make or to this script, pid $$) stops every node.
MSG
fi

# --- supervise ---

while :; do
	sleep 0.2 &
	wait $! 2>/dev/null || true # a signal interrupts this wait: the trap runs at once
	if ! watch_parent; then
		echo "run-cluster: make stopped (or its parent went away): stopping the cluster" >&2
		stop
		exit 1
	fi
	now=$(now_ms)
	left=0
	for i in "${nodes[@]}"; do
		[ -n "${pids[$i]:-}" ] || continue
		id="n$((i + 1))"
		if [ "${restart_at[$i]}" -gt 0 ]; then
			left=$((left + 1))
			if [ "$now" -ge "${restart_at[$i]}" ]; then
				restart_at[$i]=0
				restarts[$i]=$((restarts[$i] + 1))
				start_node "$i"
				echo "node $id restarted (pid ${pids[$i]})"
			fi
			continue
		fi
		if alive "$i"; then
			left=$((left + 1))
			continue
		fi
		code=0
		wait "${pids[$i]}" 2>/dev/null || code=$?
		up=$((now - started[$i]))
		if [ "$code" -gt 128 ] && [ "$code" -lt 160 ]; then
			echo "node $id (pid ${pids[$i]}) was killed by SIG$(kill -l $((code - 128))) after $((up / 1000)).$((up % 1000 / 100)) s" >&2
		else
			echo "node $id (pid ${pids[$i]}) exited with status $code after $((up / 1000)).$((up % 1000 / 100)) s; from its log ($(log_of "$i")):" >&2
			reason "$i" >&2
		fi
		if [ "$code" -gt 128 ]; then
			fails[$i]=0 # killed: not a failure to start
		elif [ "$up" -lt $((MIN_UPTIME * 1000)) ]; then
			fails[$i]=$((fails[$i] + 1))
		else
			fails[$i]=1
		fi
		if [ "${fails[$i]}" -ge "$MAX_FAST_FAILS" ]; then
			echo "node $id failed to start ${fails[$i]} times in a row: not restarting it" >&2
			pids[$i]=""
		elif [ "${restarts[$i]}" -ge "$MAX_RESTARTS" ]; then
			echo "node $id was restarted ${restarts[$i]} times (MAX_RESTARTS): not restarting it" >&2
			pids[$i]=""
		else
			echo "restarting $id in ${RESTART_DELAY}s"
			restart_at[$i]=$((now + RESTART_DELAY * 1000))
			left=$((left + 1))
		fi
	done
	if [ "$left" -eq 0 ]; then
		echo "run-cluster: no node is left running" >&2
		exit 1
	fi
done
