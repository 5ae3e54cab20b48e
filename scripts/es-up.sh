#!/usr/bin/env bash
# Start a throwaway single-node Elasticsearch on 127.0.0.1 for tests (no Docker).
#
# The minimal "integ-test-zip" build is fetched from Maven Central with mvn,
# unpacked once into the cache and reused. Idempotent: if an Elasticsearch
# already answers on the port, it says so and exits 0. Prints the URL last
# (stdout); everything else goes to stderr.
#
# Environment (all optional):
#   ES_VERSION        8.19.9
#   ES_PORT           9200        HTTP port
#   ES_TRANSPORT_PORT (unset)     transport port; unset: the first free one in 9300-9400
#   ES_JAVA_OPTS      -Xms512m -Xmx512m
#   ES_JAVA_HOME      the oldest JDK in /usr/lib/jvm that the version runs on
#                     (8.x: Java 17+, 9.x: Java 21+; the zip bundles no JDK)
#   ES_SECURITY       false       true: security on, user elastic / $ES_PASSWORD (plain HTTP),
#                                 in a tree of its own with scripts/es-test-analysis added so
#                                 the security index (API keys, native users) can be created
#   ES_PASSWORD       changeme
#   ES_TLS_DIR        (unset)     with ES_SECURITY=true: a folder holding http.crt, http.key
#                                 (PEM) and ca.crt; HTTP is then served over TLS (https://)
#   ES_START_TIMEOUT  120         seconds to wait for yellow health
#   ENRICHER_CACHE    $HOME/.cache/enricher
#   ES_CACHE          overrides where the ES tree and run dirs live (see lib.sh)
#   M2_REPO           $HOME/.m2/repository (passed to mvn as maven.repo.local)
#   ES_USER           elasticsearch (used when run as root; ES refuses root)
set -euo pipefail

_log_prefix=es-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ES_JAVA_OPTS=${ES_JAVA_OPTS:--Xms512m -Xmx512m}
ES_SECURITY=${ES_SECURITY:-false}
ES_PASSWORD=${ES_PASSWORD:-changeme}
ES_START_TIMEOUT=${ES_START_TIMEOUT:-120}
ES_TRANSPORT_PORT=${ES_TRANSPORT_PORT:-}
ES_TLS_DIR=${ES_TLS_DIR:-}

case $ES_SECURITY in
true | 1 | yes) ES_SECURITY=true ;;
false | 0 | no | "") ES_SECURITY=false ;;
*) die "ES_SECURITY must be true or false, got '$ES_SECURITY'" ;;
esac
[[ $ES_PORT =~ ^[0-9]+$ ]] || die "ES_PORT must be a number, got '$ES_PORT'"
[[ -z $ES_TRANSPORT_PORT || $ES_TRANSPORT_PORT =~ ^[0-9]+$ ]] ||
	die "ES_TRANSPORT_PORT must be a number, got '$ES_TRANSPORT_PORT'"

need_cmd curl
URL="http://127.0.0.1:${ES_PORT}"
CURL_AUTH=()
if [[ $ES_SECURITY == true ]]; then
	CURL_AUTH=(-u "elastic:${ES_PASSWORD}")
fi
if [[ -n $ES_TLS_DIR ]]; then
	[[ $ES_SECURITY == true ]] || die "ES_TLS_DIR needs ES_SECURITY=true"
	for f in http.crt http.key ca.crt; do
		[[ -r $ES_TLS_DIR/$f ]] || die "ES_TLS_DIR: no readable $ES_TLS_DIR/$f"
	done
	URL="https://127.0.0.1:${ES_PORT}"
	CURL_AUTH+=(--cacert "$ES_TLS_DIR/ca.crt")
fi

# es_probe: GET the local node's version. Sets PROBE_CODE (000 when nothing
# answers), PROBE_IS_ES (response headers say Elasticsearch) and
# PROBE_VERSION. Note: this build has no rest-root module, so "GET /" answers
# 405; /_nodes/_local works everywhere.
es_probe() {
	local hdr body
	hdr=$(mktemp)
	body=$(mktemp)
	PROBE_CODE=$(curl -s -D "$hdr" -o "$body" -w '%{http_code}' --connect-timeout 2 --max-time 10 \
		"${CURL_AUTH[@]}" "$URL/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null || true)
	PROBE_IS_ES=false
	# 401s from the security layer carry no product header, only the realm.
	if grep -qiE '^(x-elastic-product:[[:space:]]*Elasticsearch|www-authenticate:[[:space:]]*Basic realm="security")' "$hdr"; then
		PROBE_IS_ES=true
	fi
	PROBE_VERSION=$(sed -n 's/.*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$body" | head -n1)
	rm -f "$hdr" "$body"
}

# already_up: is an Elasticsearch (ours or not) answering on the port?
already_up() {
	es_probe
	[[ $PROBE_CODE == 000 ]] && return 1
	[[ $PROBE_IS_ES == true ]] ||
		die "port $ES_PORT answers HTTP $PROBE_CODE but it is not Elasticsearch"
	case $PROBE_CODE in
	200)
		if [[ $PROBE_VERSION != "$ES_VERSION" ]]; then
			log "warning: running Elasticsearch is ${PROBE_VERSION:-?}, not $ES_VERSION"
		fi
		;;
	401)
		if [[ $ES_SECURITY == true ]]; then
			log "warning: running Elasticsearch rejects elastic/\$ES_PASSWORD"
		else
			log "warning: running Elasticsearch has security enabled but ES_SECURITY=false"
		fi
		;;
	*) log "warning: running Elasticsearch answered HTTP $PROBE_CODE" ;;
	esac
	return 0
}

if already_up; then
	log "Elasticsearch already up on $URL"
	echo "$URL"
	exit 0
fi
if port_open "$ES_PORT"; then
	die "port $ES_PORT is in use by something that does not speak HTTP"
fi

# install_test_analysis PLAIN_HOME HOME: unless HOME is complete, copy the plain tree
# to HOME and add scripts/es-test-analysis, the analysis components the security index
# needs (the integ-test zip lacks the analysis-common module): without them neither API
# keys nor native users can be created. Compiled here with the JDK's javac against the
# tree's own jars. HOME's name carries a hash of the plugin's source, so a tree nodes run
# from is never replaced under them.
install_test_analysis() {
	local plain=$1 home=$2 src=$ES_TEST_ANALYSIS tmp javac jar min
	[[ -f $home/.enricher-complete ]] && return 0
	min=$(es_java_min "$ES_VERSION")
	javac=$ES_JAVA_HOME/bin/javac
	jar=$ES_JAVA_HOME/bin/jar
	if [[ ! -x $javac || ! -x $jar ]]; then
		javac=$(command -v javac || true)
		jar=$(command -v jar || true)
		[[ -n $javac && -n $jar ]] && (($(java_major "$(dirname "$(dirname "$(readlink -f "$javac")")")") >= min)) ||
			die "ES_SECURITY=true compiles scripts/es-test-analysis: $ES_JAVA_HOME has no javac and no JDK $min+ javac is on PATH; set ES_JAVA_HOME to a JDK $min+ (not a JRE)"
	fi
	log "building the test analysis plugin into $home"
	tmp=$(clone_tree "$plain" "$home")
	mkdir -p "$tmp/.build" "$tmp/plugins/enricher-test-analysis"
	"$javac" --release 17 -nowarn -cp "$plain/lib/*" -d "$tmp/.build" "$src"/src/dev/enricher/testanalysis/*.java >"$tmp/.build.log" 2>&1 &&
		"$jar" cf "$tmp/plugins/enricher-test-analysis/enricher-test-analysis.jar" -C "$tmp/.build" . >>"$tmp/.build.log" 2>&1 || {
		cat "$tmp/.build.log" >&2
		rm -rf "$tmp"
		die "building scripts/es-test-analysis failed"
	}
	sed "s/@ES_VERSION@/$ES_VERSION/" "$src/plugin-descriptor.properties" >"$tmp/plugins/enricher-test-analysis/plugin-descriptor.properties"
	rm -rf "$tmp/.build" "$tmp/.build.log"
	finish_tree "$tmp" "$home"
}

# ---- user (ES refuses to run as root) ----
# ---- user, Java, fetch + unpack (once, cached) ----
es_prepare_home
if [[ $ES_SECURITY == true ]]; then
	plain_home=$ES_HOME
	ES_TEST_ANALYSIS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/es-test-analysis"
	src_hash=$(cat "$ES_TEST_ANALYSIS/plugin-descriptor.properties" "$ES_TEST_ANALYSIS"/src/dev/enricher/testanalysis/*.java | sha256sum | cut -c1-12)
	ES_HOME="$ES_BASE/elasticsearch-$ES_VERSION-security-$src_hash"
	with_lock "$ES_BASE/.elasticsearch-$ES_VERSION-security-$src_hash.lock" install_test_analysis "$plain_home" "$ES_HOME"
fi
if [[ $ES_BASE != "$ENRICHER_CACHE" && -z ${ES_CACHE:-} ]]; then
	log "note: $ES_USER cannot reach $ENRICHER_CACHE; using $ES_BASE instead"
fi
RUN_DIR=$(es_run_dir)
mkdir -p "$RUN_DIR"
if [[ -n $ES_TRANSPORT_PORT ]] && port_open "$ES_TRANSPORT_PORT"; then
	die "transport port $ES_TRANSPORT_PORT is already in use"
fi

# ---- per-port run dir: config, data, logs, tmp ----
if pid=$(pid_alive "$RUN_DIR/es.pid"); then
	die "pid $pid from $RUN_DIR/es.pid is alive but nothing answers on $URL; run es-down.sh first"
fi
rm -f "$RUN_DIR/es.pid"
es_prepare_node "$ES_HOME" "$RUN_DIR" # sets CONF DATA LOGS TMPD PIDFILE CLI_LOG

{
	echo "# generated by scripts/es-up.sh; edits are overwritten"
	echo "cluster.name: enricher"
	echo "node.name: es-$ES_PORT"
	echo "http.port: $ES_PORT"
	if [[ -n $ES_TRANSPORT_PORT ]]; then
		echo "transport.port: $ES_TRANSPORT_PORT"
	fi
	echo "discovery.type: single-node"
	es_common_settings "$ES_HOME"
	echo "xpack.security.enabled: $ES_SECURITY"
	if [[ $ES_SECURITY == true && -n $ES_TLS_DIR ]]; then
		echo "xpack.security.http.ssl.enabled: true"
		echo "xpack.security.http.ssl.certificate: certs/http.crt"
		echo "xpack.security.http.ssl.key: certs/http.key"
		echo "xpack.security.transport.ssl.enabled: false"
	elif [[ $ES_SECURITY == true ]]; then
		echo "xpack.security.http.ssl.enabled: false"
		echo "xpack.security.transport.ssl.enabled: false"
	fi
} >"$CONF/elasticsearch.yml"
if [[ -n $ES_TLS_DIR ]]; then
	mkdir -p "$CONF/certs"
	cp "$ES_TLS_DIR/http.crt" "$ES_TLS_DIR/http.key" "$CONF/certs/"
fi
: >"$CLI_LOG"

if ((${#RUN_AS[@]})); then
	chown -R "$ES_USER:$ES_USER" "$RUN_DIR"
fi

es_node_env "$ES_HOME" "$ES_JAVA_HOME" "$ES_JAVA_OPTS" # sets ES_ENV

if [[ $ES_SECURITY == true ]]; then
	log "setting bootstrap password for user elastic"
	if [[ ! -f $CONF/elasticsearch.keystore ]]; then
		"${RUN_AS[@]}" "${ES_ENV[@]}" "$ES_HOME/bin/elasticsearch-keystore" create </dev/null >>"$CLI_LOG" 2>&1 ||
			die "elasticsearch-keystore create failed: $(tail -n 20 "$CLI_LOG")"
	fi
	printf '%s' "$ES_PASSWORD" | "${RUN_AS[@]}" "${ES_ENV[@]}" \
		"$ES_HOME/bin/elasticsearch-keystore" add --force --stdin bootstrap.password >>"$CLI_LOG" 2>&1 ||
		die "elasticsearch-keystore add failed: $(tail -n 20 "$CLI_LOG")"
fi

# stop_started: after a failed start, don't leave a half-up node behind.
stop_started() {
	local pid
	if pid=$(pid_alive "$PIDFILE"); then
		stop_pid "$pid" elasticsearch 30
	fi
	rm -f "$PIDFILE"
}

show_logs() { show_server_logs "$CLI_LOG" "$LOGS" enricher; }

log "starting Elasticsearch $ES_VERSION on $URL (home $ES_HOME, Java $(java_major "$ES_JAVA_HOME"), run dir $RUN_DIR)"
start=$(now_s)
if ! es_launch "$ES_HOME" "$ES_START_TIMEOUT"; then
	show_logs
	stop_started
	die "bin/elasticsearch failed to start (or took over ${ES_START_TIMEOUT}s)"
fi

left=$((ES_START_TIMEOUT - ($(now_s) - start)))
((left >= 10)) || left=10
rc=0
wait_ready "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" "$left" \
	"$(pid_alive "$PIDFILE" || true)" "${CURL_AUTH[@]}" || rc=$?
if ((rc != 0)); then
	show_logs
	stop_started
	((rc == 2)) && die "Elasticsearch exited before reaching yellow"
	die "Elasticsearch did not reach yellow within ${ES_START_TIMEOUT}s"
fi
es_probe
log "Elasticsearch ${PROBE_VERSION:-?} up in $(($(now_s) - start))s (pid $(pid_alive "$PIDFILE" || echo '?'), logs $LOGS)"
echo "$URL"
