#!/usr/bin/env bash
# Stop every node of the cluster started by cluster-up.sh (same CLUSTER_* env).
#   cluster-down.sh          SIGTERM via the pid files, SIGKILL after ES_STOP_TIMEOUT (30s)
#   cluster-down.sh --wipe   also delete the nodes' data dirs (fresh cluster next time)
# Exits 0 when nothing is running. One node: cluster-node.sh stop|kill N.
set -euo pipefail

_log_prefix="cluster-down"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

down_args "$@"
cluster_init

# SIGTERM all nodes first, so they shut down together rather than one by one,
# then wait for each. (The pids are read first: a node deletes its pid file as
# it shuts down.)
pids=()
for ((i = 1; i <= CL_N; i++)); do
	pids[i]=$(pid_alive "$(cluster_node_pidfile "$i")" || true)
	if [[ -n ${pids[i]} ]]; then
		log "stopping node $i on port ${CL_HTTP[i - 1]} (pid ${pids[i]})"
		kill -TERM "${pids[i]}" 2>/dev/null || true
	fi
done
for ((i = 1; i <= CL_N; i++)); do
	if [[ -n ${pids[i]} ]]; then
		stop_pid "${pids[i]}" "node $i" "${ES_STOP_TIMEOUT:-30}"
	fi
	rm -f "$(cluster_node_pidfile "$i")"
	if port_open "${CL_HTTP[i - 1]}"; then
		log "warning: something still listens on 127.0.0.1:${CL_HTTP[i - 1]} (not started by cluster-up.sh from $CL_DIR)"
	fi
done

if [[ $wipe == true ]]; then
	rm -f "$CL_DIR/formed"
	for ((i = 1; i <= CL_N; i++)); do
		log "wiping $CL_DIR/node-$i/data"
		rm -rf "$CL_DIR/node-$i/data"
	done
fi
