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
#   ES_PORT           9200        HTTP port (transport picks a free 9300-9400 port)
#   ES_JAVA_OPTS      -Xms512m -Xmx512m
#   ES_JAVA_HOME      Java 17 from /usr/lib/jvm (the zip bundles no JDK)
#   ES_SECURITY       false       true: security on, user elastic / $ES_PASSWORD (plain HTTP)
#   ES_PASSWORD       changeme
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
M2_REPO=${M2_REPO:-${HOME:-/tmp}/.m2/repository}

case $ES_SECURITY in
true | 1 | yes) ES_SECURITY=true ;;
false | 0 | no | "") ES_SECURITY=false ;;
*) die "ES_SECURITY must be true or false, got '$ES_SECURITY'" ;;
esac
[[ $ES_PORT =~ ^[0-9]+$ ]] || die "ES_PORT must be a number, got '$ES_PORT'"

need_cmd curl unzip
URL="http://127.0.0.1:${ES_PORT}"
CURL_AUTH=()
if [[ $ES_SECURITY == true ]]; then
	CURL_AUTH=(-u "elastic:${ES_PASSWORD}")
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

# ---- user (ES refuses to run as root) ----
RUN_AS=()
if is_root; then
	if ! id -u "$ES_USER" >/dev/null 2>&1; then
		log "creating system user $ES_USER"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$ES_USER"
	fi
	need_cmd runuser
	RUN_AS=(runuser -u "$ES_USER" --)
fi

BASE=$(es_base_dir)
if [[ $BASE != "$ENRICHER_CACHE" && -z ${ES_CACHE:-} ]]; then
	log "note: $ES_USER cannot reach $ENRICHER_CACHE; using $BASE instead"
fi
ES_HOME="$BASE/elasticsearch-$ES_VERSION"
RUN_DIR=$(es_run_dir)
mkdir -p "$BASE" "$RUN_DIR"
chmod 755 "$BASE" 2>/dev/null || true

# ---- Java ----
if [[ -z ${ES_JAVA_HOME:-} ]]; then
	for j in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/java-17-*; do
		if [[ -x $j/bin/java ]]; then
			ES_JAVA_HOME=$j
			break
		fi
	done
fi
if [[ -z ${ES_JAVA_HOME:-} ]] && command -v java >/dev/null 2>&1; then
	ES_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
fi
[[ -n ${ES_JAVA_HOME:-} && -x ${ES_JAVA_HOME}/bin/java ]] ||
	die "no Java found; set ES_JAVA_HOME (Elasticsearch 8 needs Java 17+)"

# ---- fetch + unpack (once, cached) ----
ZIP="$M2_REPO/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"

install_es() {
	[[ -f $ES_HOME/.enricher-complete ]] && return 0
	if [[ ! -s $ZIP ]]; then
		need_cmd mvn
		log "fetching elasticsearch $ES_VERSION integ-test-zip from Maven Central"
		local mvn_log="$BASE/mvn-$ES_VERSION.log"
		if ! mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" dependency:get \
			-Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip" \
			-Dtransitive=false </dev/null >"$mvn_log" 2>&1; then
			tail -n 40 "$mvn_log" >&2 || true
			die "mvn dependency:get failed (full log: $mvn_log)"
		fi
		[[ -s $ZIP ]] || die "mvn succeeded but $ZIP is missing"
	fi
	log "unpacking $ZIP into $ES_HOME"
	local tmp
	tmp=$(mktemp -d "$BASE/.unpack.XXXXXX")
	unzip -q "$ZIP" -d "$tmp" || {
		rm -rf "$tmp"
		die "unzip failed"
	}
	[[ -x $tmp/elasticsearch-$ES_VERSION/bin/elasticsearch ]] || {
		rm -rf "$tmp"
		die "unexpected zip layout"
	}
	rm -rf "$ES_HOME"
	mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
	rmdir "$tmp"
	# Readable by the unprivileged ES user; ES writes only to the run dir.
	chmod -R a+rX,go-w "$ES_HOME"
	touch "$ES_HOME/.enricher-complete"
}
with_lock "$BASE/.es-$ES_VERSION.lock" install_es
if ((${#RUN_AS[@]})) && ! "${RUN_AS[@]}" test -x "$ES_HOME/bin/elasticsearch"; then
	die "user $ES_USER cannot reach $ES_HOME; pick another ES_CACHE"
fi

# ---- per-port run dir: config, data, logs, tmp ----
CONF="$RUN_DIR/config"
DATA="$RUN_DIR/data"
LOGS="$RUN_DIR/logs"
TMPD="$RUN_DIR/tmp"
PIDFILE="$RUN_DIR/es.pid"
CLI_LOG="$LOGS/cli.log"

if pid=$(pid_alive "$PIDFILE"); then
	die "pid $pid from $PIDFILE is alive but nothing answers on $URL; run es-down.sh first"
fi
rm -f "$PIDFILE"

if [[ -f $RUN_DIR/version && $(<"$RUN_DIR/version") != "$ES_VERSION" && -d $DATA ]]; then
	log "warning: $DATA was written by Elasticsearch $(<"$RUN_DIR/version"); if startup fails, run es-down.sh --wipe"
fi

mkdir -p "$CONF" "$DATA" "$LOGS" "$TMPD"
# Stock config (jvm.options, log4j2, users, roles.yml, ...) is copied once per
# version, so file-realm users/roles added to $CONF survive restarts.
# elasticsearch.yml is regenerated below on every start.
if [[ ! -f $RUN_DIR/version || $(<"$RUN_DIR/version") != "$ES_VERSION" ]]; then
	cp -Rf "$ES_HOME/config/." "$CONF/"
else
	# (not "cp -n": its exit status differs between coreutils versions)
	while IFS= read -r -d '' f; do
		if [[ ! -e $CONF/$f ]]; then
			mkdir -p "$(dirname "$CONF/$f")"
			cp -f "$ES_HOME/config/$f" "$CONF/$f"
		fi
	done < <(cd "$ES_HOME/config" && find . -type f -print0)
fi

# Only settings that exist in this build: the integ-test zip ships just the
# transport-netty4, x-pack-core, x-pack-security and apm modules, and unknown
# settings make Elasticsearch refuse to start.
{
	echo "# generated by scripts/es-up.sh; edits are overwritten"
	echo "cluster.name: enricher"
	echo "node.name: es-$ES_PORT"
	echo "network.host: 127.0.0.1"
	echo "http.port: $ES_PORT"
	echo "discovery.type: single-node"
	echo "path.data: $DATA"
	echo "path.logs: $LOGS"
	echo "cluster.routing.allocation.disk.threshold_enabled: false"
	echo "action.destructive_requires_name: false"
	if [[ -d $ES_HOME/modules/ingest-geoip ]]; then
		echo "ingest.geoip.downloader.enabled: false"
	fi
	echo "xpack.security.enabled: $ES_SECURITY"
	if [[ $ES_SECURITY == true ]]; then
		echo "xpack.security.http.ssl.enabled: false"
		echo "xpack.security.transport.ssl.enabled: false"
	fi
} >"$CONF/elasticsearch.yml"
echo "$ES_VERSION" >"$RUN_DIR/version"
: >"$CLI_LOG"

if ((${#RUN_AS[@]})); then
	chown -R "$ES_USER:$ES_USER" "$RUN_DIR"
fi

es_env=(
	env -u JAVA_HOME
	"ES_HOME=$ES_HOME"
	"ES_PATH_CONF=$CONF"
	"ES_JAVA_HOME=$ES_JAVA_HOME"
	"ES_JAVA_OPTS=$ES_JAVA_OPTS"
	"ES_TMPDIR=$TMPD"
)

if [[ $ES_SECURITY == true ]]; then
	log "setting bootstrap password for user elastic"
	if [[ ! -f $CONF/elasticsearch.keystore ]]; then
		"${RUN_AS[@]}" "${es_env[@]}" "$ES_HOME/bin/elasticsearch-keystore" create </dev/null >>"$CLI_LOG" 2>&1 ||
			die "elasticsearch-keystore create failed: $(tail -n 20 "$CLI_LOG")"
	fi
	printf '%s' "$ES_PASSWORD" | "${RUN_AS[@]}" "${es_env[@]}" \
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

show_logs() {
	log "---- $CLI_LOG ----"
	tail -n 40 "$CLI_LOG" >&2 || true
	local f
	for f in "$LOGS"/enricher.log "$LOGS"/enricher_server.json; do
		[[ -f $f ]] || continue
		log "---- $f (tail) ----"
		tail -n 60 "$f" >&2 || true
		break
	done
}

log "starting Elasticsearch $ES_VERSION on $URL (home $ES_HOME, run dir $RUN_DIR)"
start=$(now_s)
# -d daemonizes once the node has started; -p writes the server's pid.
if ! (
	close_extra_fds
	exec timeout --kill-after=10 "$ES_START_TIMEOUT" \
		"${RUN_AS[@]}" "${es_env[@]}" "$ES_HOME/bin/elasticsearch" -d -p "$PIDFILE" </dev/null >>"$CLI_LOG" 2>&1
); then
	show_logs
	stop_started
	die "bin/elasticsearch failed to start (or took over ${ES_START_TIMEOUT}s)"
fi

left=$((ES_START_TIMEOUT - ($(now_s) - start)))
((left >= 10)) || left=10
if ! wait_http "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" "$left" "${CURL_AUTH[@]}"; then
	show_logs
	stop_started
	die "Elasticsearch did not reach yellow within ${ES_START_TIMEOUT}s"
fi
es_probe
log "Elasticsearch ${PROBE_VERSION:-?} up in $(($(now_s) - start))s (pid $(pid_alive "$PIDFILE" || echo '?'), logs $LOGS)"
echo "$URL"
