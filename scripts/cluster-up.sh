#!/usr/bin/env bash
# Start a throwaway three-node Elasticsearch cluster on 127.0.0.1 for tests (no
# Docker): the same integ-test zip as es-up.sh, security off, each node with its
# own config/data/logs under $CACHE/run/cluster-<first port>/node-<i>.
#
# Starts only the nodes that are not running (so it also brings back a node a
# test stopped; see cluster-node.sh), then waits until all of them are in the
# cluster and it is yellow or green. Idempotent: when every node is up it says
# so and exits 0. Prints the node URLs last, comma-separated (stdout; usable as
# ELASTICSEARCH_URL); everything else goes to stderr.
#
# Environment (all optional):
#   CLUSTER_PORTS            "9250 9251 9252"  HTTP ports, one node each (commas work too)
#   CLUSTER_BASE_PORT        9250              instead of CLUSTER_PORTS: it and the next two
#   CLUSTER_TRANSPORT_PORTS  each HTTP port + 100 (9350 9351 9352)
#   CLUSTER_JAVA_OPTS        -Xms512m -Xmx512m (per node)
#   CLUSTER_START_TIMEOUT    180               seconds, for the nodes and for cluster health
#   ES_VERSION, ES_JAVA_HOME, ES_USER, ES_CACHE, ENRICHER_CACHE, M2_REPO: as for es-up.sh
set -euo pipefail

_log_prefix="cluster-up"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_START_TIMEOUT=${CLUSTER_START_TIMEOUT:-180}
need_cmd curl
cluster_init

missing=()
for ((i = 1; i <= CL_N; i++)); do
	case $(cluster_node_state "$i") in
	up) ;;
	starting) die "node $i: pid from $(cluster_node_pidfile "$i") is alive but port ${CL_HTTP[i - 1]} does not answer; run cluster-node.sh stop $i" ;;
	foreign) die "node $i: port ${CL_HTTP[i - 1]} is in use by something not started by cluster-up.sh (another es-up.sh node?)" ;;
	down) missing+=("$i") ;;
	esac
done

start=$(now_s)
first=$(cluster_node_url 1)
if ((${#missing[@]} == 0)); then
	log "all $CL_N nodes already up ($(cluster_urls))"
else
	cluster_prepare
	log "starting Elasticsearch $ES_VERSION node(s) ${missing[*]} of $CL_N (Java $(java_major "$ES_JAVA_HOME"), run dir $CL_DIR)"
	# In parallel: a fresh cluster forms only once a majority of nodes is up.
	pids=()
	for i in "${missing[@]}"; do
		cluster_start_node "$i" &
		pids+=("$!")
	done
	failed=()
	for k in "${!pids[@]}"; do
		wait "${pids[k]}" || failed+=("${missing[k]}")
	done
	if ((${#failed[@]})); then
		for i in "${missing[@]}"; do
			cluster_stop_node "$i"
		done
		die "node(s) ${failed[*]} failed to start; stopped the nodes started now (${missing[*]})"
	fi
	first=$(cluster_node_url "${missing[0]}")
fi

if ! cluster_wait_health "$first" "$CL_N" "$CLUSTER_START_TIMEOUT"; then
	curl -s --max-time 10 "$first/_cluster/health?pretty" >&2 || true
	die "the cluster did not reach $CL_N nodes and yellow within ${CLUSTER_START_TIMEOUT}s (logs: $CL_DIR/node-*/logs)"
fi
touch "$CL_DIR/formed"
status=$(curl -s --max-time 10 "$first/_cluster/health" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
if ((${#missing[@]})); then
	log "cluster of $CL_N nodes up in $(($(now_s) - start))s, status ${status:-?}"
else
	log "cluster status ${status:-?}"
fi
cluster_urls
