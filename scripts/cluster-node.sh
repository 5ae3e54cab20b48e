#!/usr/bin/env bash
# Stop, kill or (re)start ONE node of the cluster started by cluster-up.sh, for
# tests that take a node away mid-run (same CLUSTER_* env as cluster-up.sh).
#
#   cluster-node.sh stop N      SIGTERM (SIGKILL after ES_STOP_TIMEOUT, 30s); 0 if not running
#   cluster-node.sh kill N      SIGKILL at once (a crash)
#   cluster-node.sh start N     start node N if it is not running, wait until it has
#                               joined (every running node in the cluster, yellow or
#                               green; needs a majority of the nodes up); prints its URL
#   cluster-node.sh restart N   stop, then start
#   cluster-node.sh status      one line per node: N PORT up|starting|down|foreign
#
# N is 1..3 (1 is the node on the first port). Logs go to stderr.
set -euo pipefail

_log_prefix="cluster-node"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: cluster-node.sh stop|kill|start|restart N, or cluster-node.sh status"; }
(($# >= 1)) || usage
cmd=$1
need_cmd curl
cluster_init
if [[ $cmd == status ]]; then
	(($# == 1)) || usage
	for ((i = 1; i <= CL_N; i++)); do
		printf '%s %s %s\n' "$i" "${CL_HTTP[i - 1]}" "$(cluster_node_state "$i")"
	done
	exit 0
fi
(($# == 2)) || usage
n=$2
cluster_check_node "$n"

start_node() {
	case $(cluster_node_state "$n") in
	up)
		log "node $n already up on $(cluster_node_url "$n")"
		cluster_node_url "$n"
		return 0
		;;
	starting) die "node $n: pid from $(cluster_node_pidfile "$n") is alive but port ${CL_HTTP[n - 1]} does not answer; run cluster-node.sh stop $n" ;;
	foreign) die "node $n: port ${CL_HTTP[n - 1]} is in use by something not started by cluster-up.sh" ;;
	esac
	cluster_prepare
	local start timeout=${CLUSTER_START_TIMEOUT:-180} want
	start=$(now_s)
	(cluster_start_node "$n") || {
		cluster_stop_node "$n"
		die "node $n failed to start"
	}
	want=$(cluster_running)
	if ! cluster_wait_health "$(cluster_node_url "$n")" "$want" "$timeout"; then
		curl -s --max-time 10 "$(cluster_node_url "$n")/_cluster/health?pretty" >&2 || true
		die "node $n is running but the cluster did not reach $want nodes and yellow within ${timeout}s (a majority of the $CL_N nodes must be up)"
	fi
	log "node $n up and in the cluster ($want of $CL_N nodes) in $(($(now_s) - start))s"
	cluster_node_url "$n"
}

case $cmd in
stop) cluster_stop_node "$n" ;;
kill) cluster_stop_node "$n" KILL ;;
start) start_node ;;
restart)
	cluster_stop_node "$n"
	start_node
	;;
*) usage ;;
esac
