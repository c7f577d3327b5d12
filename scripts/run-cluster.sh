#!/usr/bin/env bash
# Starts a local 3-node coordd cluster on loopback and stops every node on
# Ctrl-C or SIGTERM. Used by `make run` and, with TLS=1, `make run-tls`.
#
#   HTTP_PORTS="7101 7102 7103" RAFT_PORTS="7201 7202 7203" DATA_DIR=./data
#   COORDD=./bin/coordd  HOST=127.0.0.1
#   TLS=1: mutual TLS between nodes and https, with certificates that
#          `coordd certs` writes into TLS_DIR (default $DATA_DIR/tls) once
#   ACL=1: access control (-acl) on every node; the first start bootstraps it
#          with coordctl and keeps the management secret in
#          $DATA_DIR/management.token (COORDCTL=./bin/coordctl)
#   EXTRA_FLAGS="...": more coordd flags for every node
set -euo pipefail

COORDD=${COORDD:-./bin/coordd}
HOST=${HOST:-127.0.0.1}
DATA_DIR=${DATA_DIR:-./data}
TLS=${TLS:-0}
TLS_DIR=${TLS_DIR:-$DATA_DIR/tls}
ACL=${ACL:-0}
COORDCTL=${COORDCTL:-$(dirname "$COORDD")/coordctl}
TOKEN_FILE="$DATA_DIR/management.token"
read -r -a extra_flags <<<"${EXTRA_FLAGS:-}"
if [ "$ACL" = 1 ]; then extra_flags+=(-acl); fi
read -r -a http_ports <<<"${HTTP_PORTS:-7101 7102 7103}"
read -r -a raft_ports <<<"${RAFT_PORTS:-7201 7202 7203}"
if [ "${#http_ports[@]}" -ne 3 ] || [ "${#raft_ports[@]}" -ne 3 ]; then
	echo "run-cluster: HTTP_PORTS and RAFT_PORTS must each list 3 ports" >&2
	exit 2
fi

peers=""
for i in 0 1 2; do
	peers+="n$((i + 1))=${HOST}:${raft_ports[$i]},${HOST}:${http_ports[$i]};"
done

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping coordd nodes..."
	for pid in "${pids[@]}"; do [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	echo "all nodes stopped (data kept in ${DATA_DIR}; 'make clean' removes it)"
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

scheme=http
curl_tls=()
if [ "$TLS" = 1 ]; then
	scheme=https
	curl_tls=(--cacert "$TLS_DIR/ca.pem")
fi

start_node() {
	local i=$1 id="n$(($1 + 1))"
	local tls_flags=()
	if [ "$TLS" = 1 ]; then
		tls_flags=(-tls-cert "$TLS_DIR/$id.pem" -tls-key "$TLS_DIR/$id-key.pem" -tls-ca "$TLS_DIR/ca.pem")
	fi
	"$COORDD" -id "$id" -data-dir "$DATA_DIR/$id" \
		-raft-addr "${HOST}:${raft_ports[$i]}" -http-addr "${HOST}:${http_ports[$i]}" \
		-bootstrap "$peers" ${tls_flags[@]+"${tls_flags[@]}"} ${extra_flags[@]+"${extra_flags[@]}"} \
		>>"$DATA_DIR/$id.log" 2>&1 &
	pids[$i]=$!
}

mkdir -p "$DATA_DIR"
if [ "$TLS" = 1 ] && [ ! -f "$TLS_DIR/ca.pem" ]; then
	# Once: a cluster CA, n1..n3 and a client certificate (no openssl).
	"$COORDD" certs -dir "$TLS_DIR" -nodes n1,n2,n3 -hosts "${HOST},localhost,127.0.0.1,::1" >/dev/null
	echo "wrote a cluster CA and certificates into $TLS_DIR (coordd certs)"
fi
for i in 0 1 2; do start_node "$i"; done

# Wait until every node is ready (a leader is known and it has caught up).
for i in 0 1 2; do
	for _ in $(seq 1 100); do
		if curl -fs ${curl_tls[@]+"${curl_tls[@]}"} "${scheme}://${HOST}:${http_ports[$i]}/readyz" >/dev/null 2>&1; then break; fi
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "node n$((i + 1)) exited; its log:" >&2
			tail -n 20 "$DATA_DIR/n$((i + 1)).log" >&2
			exit 1
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
		"$COORDCTL" -endpoints "${scheme}://${HOST}:${http_ports[0]},${scheme}://${HOST}:${http_ports[1]},${scheme}://${HOST}:${http_ports[2]}" \
			${ctl_tls[@]+"${ctl_tls[@]}"} acl bootstrap -secret-file "$TOKEN_FILE" >/dev/null
		echo "ACLs bootstrapped: the management token's secret is in $TOKEN_FILE"
	fi
	auth=(-H "Authorization: Bearer $(cat "$TOKEN_FILE")")
fi
leader=$(curl -fs ${curl_tls[@]+"${curl_tls[@]}"} ${auth[@]+"${auth[@]}"} "${scheme}://${HOST}:${http_ports[0]}/v1/status" | sed -n 's/.*"leader":{"id":"\([^"]*\)".*/\1/p')
h="" ctok="" acl_note=""
if [ "$ACL" = 1 ]; then
	h="-H \"Authorization: Bearer \$(cat ${TOKEN_FILE})\" "
	ctok="-token-file ${TOKEN_FILE} "
	acl_note="ACLs on: requests need a token (management secret in ${TOKEN_FILE}); without one: 401.
"
fi
if [ "$TLS" = 1 ]; then
	cat <<MSG
coordd cluster running with TLS (leader: ${leader:-electing}); logs in ${DATA_DIR}/n*.log
  n1  https://${HOST}:${http_ports[0]}  raft ${HOST}:${raft_ports[0]} (mutual TLS)  pid ${pids[0]}
  n2  https://${HOST}:${http_ports[1]}  raft ${HOST}:${raft_ports[1]} (mutual TLS)  pid ${pids[1]}
  n3  https://${HOST}:${http_ports[2]}  raft ${HOST}:${raft_ports[2]} (mutual TLS)  pid ${pids[2]}
Certificates in ${TLS_DIR} (CA ca.pem; node n1.pem...; client.pem for tools).
${acl_note}
Try:
  curl -s --cacert ${TLS_DIR}/ca.pem ${h}https://${HOST}:${http_ports[1]}/v1/status
  curl -s --cacert ${TLS_DIR}/ca.pem ${h}-X PUT --data-binary 'hello' https://${HOST}:${http_ports[1]}/v1/kv/greeting
  curl -s --cacert ${TLS_DIR}/ca.pem --cert ${TLS_DIR}/client.pem --key ${TLS_DIR}/client-key.pem ${h}'https://${HOST}:${http_ports[2]}/v1/kv/greeting?raw'
  curl -s --cacert ${TLS_DIR}/ca.pem https://${HOST}:${http_ports[1]}/v1/kv/greeting    # no token: refused when ACLs are on
  curl -s http://${HOST}:${http_ports[1]}/v1/status    # plaintext: refused (400)
  bin/coordctl -endpoints https://${HOST}:${http_ports[0]},https://${HOST}:${http_ports[1]},https://${HOST}:${http_ports[2]} -ca ${TLS_DIR}/ca.pem ${ctok}status
  kill -HUP ${pids[0]}    # n1 re-reads its certificate files (see ${DATA_DIR}/n1.log)
Web console (any node; trust ${TLS_DIR}/ca.pem, paste the token): https://${HOST}:${http_ports[0]}/ui/
A node that dies is restarted from its data dir after ${RESTART_DELAY:-3}s.
Ctrl-C stops all three nodes.
MSG
else
	cat <<MSG
coordd cluster running (leader: ${leader:-electing}); logs in ${DATA_DIR}/n*.log
  n1  http://${HOST}:${http_ports[0]}  raft ${HOST}:${raft_ports[0]}  pid ${pids[0]}
  n2  http://${HOST}:${http_ports[1]}  raft ${HOST}:${raft_ports[1]}  pid ${pids[1]}
  n3  http://${HOST}:${http_ports[2]}  raft ${HOST}:${raft_ports[2]}  pid ${pids[2]}

Try:
  curl -s http://${HOST}:${http_ports[1]}/v1/status
  curl -s -X PUT --data-binary 'hello' http://${HOST}:${http_ports[1]}/v1/kv/greeting
  curl -s http://${HOST}:${http_ports[2]}/v1/kv/greeting
  curl -s 'http://${HOST}:${http_ports[2]}/v1/kv/greeting?raw'
  bin/coordctl status        # the command-line client (make build puts it in bin/)
Web console (any node): http://${HOST}:${http_ports[0]}/ui/
A node that dies is restarted from its data dir after ${RESTART_DELAY:-3}s.
Ctrl-C stops all three nodes.
MSG
fi

# A node that exits (say, the leader you just killed with kill -9) is
# restarted from its data dir after RESTART_DELAY seconds, at most
# MAX_RESTARTS times, so that it rejoins as a follower and catches up.
RESTART_DELAY=${RESTART_DELAY:-3}
MAX_RESTARTS=${MAX_RESTARTS:-20}
restarts=(0 0 0)
while :; do
	wait -n "${pids[@]}" 2>/dev/null || true
	for i in 0 1 2; do
		kill -0 "${pids[$i]}" 2>/dev/null && continue
		id="n$((i + 1))"
		if [ "${restarts[$i]}" -ge "$MAX_RESTARTS" ]; then
			echo "node $id exited again; not restarting it (see $DATA_DIR/$id.log)" >&2
			exit 1
		fi
		restarts[$i]=$((restarts[$i] + 1))
		echo "node $id exited; restarting it in ${RESTART_DELAY}s (log: $DATA_DIR/$id.log)"
		sleep "$RESTART_DELAY" &
		wait $! 2>/dev/null || true # a signal interrupts this wait, not sleep
		start_node "$i"
		echo "node $id restarted (pid ${pids[$i]})"
	done
done
