#!/usr/bin/env bash
# Three enricher replicas sharing the work on the three-node cluster of cluster-up.sh:
# sample alerts loaded, each replica's share shown, one replica killed with SIGKILL,
# new alerts enriched by the other two. Run through `make demo-replicas`; the cluster
# stays up afterwards (make cluster-down).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${ENRICHER_BIN:-bin/enricher}
N=${DEMO_ALERTS:-3000}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "three-node Elasticsearch cluster (make cluster-up)"
URLS=$(scripts/cluster-up.sh | tail -1)
export ELASTICSEARCH_URL=$URLS
FIRST=${URLS%%,*}
echo "$URLS"

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/enricher.yml" <<EOF
alerts:
  indices: [.alerts-security.alerts-*, logs-endpoint.alerts-*, wazuh-alerts-*, sigma-alerts-*]
# A live window over the whole sample (3000 alerts, 7 s apart): alerts loaded later are
# the live path's, not left to the next backfill sweep.
daemon: {poll_interval: 2s, backfill_rate: 0, live_window: 24h}
EOF

say "loading $N sample alerts into the cluster"
"$BIN" sample --count "$N" --seed 11

ports=(9471 9472 9473)
names=(demo-a demo-b demo-c)
say "starting three replicas: ${names[*]} (metrics on ${ports[*]})"
for i in 0 1 2; do
	ENRICHER_INSTANCE=${names[i]} "$BIN" run --config "$work/enricher.yml" --listen "127.0.0.1:${ports[i]}" \
		2>"$work/${names[i]}.log" &
	pids+=("$!")
done

metric() { # metric PORT SERIES-PREFIX: the sum of the matching samples
	curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
		awk -v s="$2" 'index($0, s) == 1 { t += $NF } END { printf "%d\n", t }'
}
written() { # alerts a replica wrote (every outcome that writes)
	local t=0 o
	for o in enriched unmapped no_technique partial; do
		t=$((t + $(metric "$1" "enricher_alerts_processed_total{outcome=\"$o\"")))
	done
	echo "$t"
}
count() { # count [QUERY]: alerts in the cluster's alert indices
	local q=${1:-'{"match_all":{}}'}
	curl -fsS -X POST "$FIRST/.alerts-security.alerts-*,logs-endpoint.alerts-*,wazuh-alerts-*,sigma-alerts-*/_count?expand_wildcards=open,hidden" \
		-H 'Content-Type: application/json' -d "{\"query\":$q}" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'
}
wait_idle() { # until the replicas' writes stop growing for 6 s
	local last=-1 same=0 now p
	for _ in $(seq 1 120); do
		now=0
		for p in "$@"; do now=$((now + $(written "$p"))); done
		if ((now == last && now > 0)); then same=$((same + 1)); else same=0; fi
		((same >= 3)) && return 0
		last=$now
		sleep 2
	done
	echo "replicas still busy after 4 min" >&2
	return 1
}
show() {
	local i
	printf '%-8s %-7s %-9s %s\n' replica share replicas written
	for i in "$@"; do
		printf '%-8s %-7s %-9s %s\n' "${names[i]}" \
			"$(grep -o 'msg="replica share"[^ ]* [^ ]* slice=[^ ]*' "$work/${names[i]}.log" | tail -1 | sed 's/.*slice=//')" \
			"$(metric "${ports[i]}" enricher_replicas)" "$(written "${ports[i]}")"
	done
}

wait_idle "${ports[@]}"
say "each replica enriched its own slice (a hash of index and _id; README: Several replicas)"
show 0 1 2

say "kill -9 ${names[2]}; loading $N more alerts"
{
	kill -9 "${pids[2]}"
	wait "${pids[2]}"
} 2>/dev/null || true
killed=$(date +%s)
"$BIN" sample --count "$N" --seed 12 >/dev/null
for _ in $(seq 1 60); do
	[[ $(metric "${ports[0]}" enricher_replicas) == 2 && $(metric "${ports[1]}" enricher_replicas) == 2 ]] && break
	sleep 1
done
echo "the others took ${names[2]}'s share over after $(($(date +%s) - killed)) s (bound: lease 15 s + 5 s + poll 2 s)"
wait_idle "${ports[0]}" "${ports[1]}"
show 0 1
curl -fsS -X POST "$FIRST/.alerts-security.alerts-*,logs-endpoint.alerts-*,wazuh-alerts-*,sigma-alerts-*/_refresh?expand_wildcards=open,hidden" >/dev/null
echo "alerts carrying enricher's fields: $(count '{"exists":{"field":"attack_mappings.ruleset.hash"}}') of $(count) in the cluster"
