#!/usr/bin/env bash
# Start a throwaway single-node OpenSearch on 127.0.0.1 for tests (no Docker).
#
# The minimal "integ-test-zip" build (org.opensearch.distribution.integ-test-zip:
# opensearch) is fetched from Maven Central with mvn, unpacked once into the
# cache and reused. It ships only the transport-netty4 module: no security
# plugin, so plain HTTP without authentication. With OS_SECURITY=true the
# security plugin (org.opensearch.plugin:opensearch-security, the same version
# plus ".0", also from Maven Central) is installed into a second tree beside it
# and the node serves HTTPS with the certificate in OS_TLS_DIR, user admin /
# $OS_ADMIN_PASSWORD. Idempotent: if an OpenSearch already answers on the port,
# it says so and exits 0. Prints the URL last (stdout); everything else goes to
# stderr.
#
# Environment (all optional):
#   OS_VERSION          2.19.6
#   OS_PORT             9201        HTTP port
#   OS_TRANSPORT_PORT   OS_PORT+200 (9401; outside the 9300-9400 range other nodes pick from)
#   OS_JAVA_OPTS        -Xms512m -Xmx512m
#   OS_JAVA_HOME        the oldest JDK in /usr/lib/jvm it runs on (2.x: 17+, 3.x: 21+)
#   OS_START_TIMEOUT    120         seconds to wait for yellow health
#   ENRICHER_CACHE      $HOME/.cache/enricher
#   OS_CACHE            overrides where the OpenSearch tree and run dirs live (see lib.sh)
#   M2_REPO             $HOME/.m2/repository (passed to mvn as maven.repo.local)
#   OS_USER             opensearch (used when run as root; OpenSearch refuses root)
#   OS_SECURITY         false       true: the security plugin, TLS on transport and HTTP
#   OS_TLS_DIR          (unset)     with OS_SECURITY=true (required): a folder holding
#                                   http.crt, http.key (PEM, PKCS#8) and ca.crt; the same
#                                   certificate serves HTTP and the transport layer
#   OS_ADMIN_PASSWORD   (unset)     with OS_SECURITY=true (required): password of user admin
set -euo pipefail

_log_prefix=opensearch-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OS_JAVA_OPTS=${OS_JAVA_OPTS:--Xms512m -Xmx512m}
OS_START_TIMEOUT=${OS_START_TIMEOUT:-120}
[[ $OS_PORT =~ ^[0-9]+$ ]] || die "OS_PORT must be a number, got '$OS_PORT'"
OS_TRANSPORT_PORT=${OS_TRANSPORT_PORT:-$((OS_PORT + 200))}
[[ $OS_TRANSPORT_PORT =~ ^[0-9]+$ ]] || die "OS_TRANSPORT_PORT must be a number, got '$OS_TRANSPORT_PORT'"

need_cmd curl
OS_SECURITY=${OS_SECURITY:-false}
case $OS_SECURITY in
true | 1 | yes) OS_SECURITY=true ;;
false | 0 | no | "") OS_SECURITY=false ;;
*) die "OS_SECURITY must be true or false, got '$OS_SECURITY'" ;;
esac
OS_TLS_DIR=${OS_TLS_DIR:-}
OS_ADMIN_PASSWORD=${OS_ADMIN_PASSWORD:-}
URL="http://127.0.0.1:${OS_PORT}"
CURL_AUTH=()
if [[ $OS_SECURITY == true ]]; then
	# The security plugin will not start without TLS on the transport layer.
	[[ -n $OS_TLS_DIR ]] || die "OS_SECURITY=true needs OS_TLS_DIR (ca.crt, http.crt, http.key)"
	[[ -n $OS_ADMIN_PASSWORD ]] || die "OS_SECURITY=true needs OS_ADMIN_PASSWORD"
	for f in ca.crt http.crt http.key; do
		[[ -r $OS_TLS_DIR/$f ]] || die "OS_TLS_DIR: no readable $OS_TLS_DIR/$f"
	done
	[[ $OS_ADMIN_PASSWORD =~ ^[^[:space:]\"\\]+$ ]] || die "OS_ADMIN_PASSWORD: no spaces, quotes or backslashes, please"
	need_cmd openssl
	URL="https://127.0.0.1:${OS_PORT}"
	# The password goes to curl in a netrc file, not on its command line.
	NETRC=$(mktemp)
	trap 'rm -f "$NETRC"' EXIT
	printf 'machine 127.0.0.1 login admin password %s\n' "$OS_ADMIN_PASSWORD" >"$NETRC"
	CURL_AUTH=(--netrc-file "$NETRC" --cacert "$OS_TLS_DIR/ca.crt")
elif [[ -n $OS_TLS_DIR || -n $OS_ADMIN_PASSWORD ]]; then
	die "OS_TLS_DIR and OS_ADMIN_PASSWORD need OS_SECURITY=true"
fi

# os_probe: GET /. Sets PROBE_CODE (000 when nothing answers),
# PROBE_DISTRIBUTION ("opensearch"; Elasticsearch sends none) and PROBE_VERSION.
os_probe() {
	local body
	body=$(mktemp)
	PROBE_CODE=$(curl -s -o "$body" -w '%{http_code}' --connect-timeout 2 --max-time 10 "${CURL_AUTH[@]}" "$URL/" 2>/dev/null || true)
	PROBE_DISTRIBUTION=$(sed -n 's/.*"distribution"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$body" | head -n1)
	PROBE_VERSION=$(sed -n 's/.*"number"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$body" | head -n1)
	rm -f "$body"
}

if os_probe && [[ $PROBE_CODE != 000 ]]; then
	[[ $PROBE_CODE != 401 ]] ||
		die "port $OS_PORT answers HTTP 401: a secured node whose admin password is not OS_ADMIN_PASSWORD, or OS_SECURITY=true is missing"
	[[ $PROBE_CODE == 200 && $PROBE_DISTRIBUTION == opensearch ]] ||
		die "port $OS_PORT answers HTTP $PROBE_CODE but it is not OpenSearch"
	if [[ $PROBE_VERSION != "$OS_VERSION" ]]; then
		log "warning: running OpenSearch is ${PROBE_VERSION:-?}, not $OS_VERSION"
	fi
	log "OpenSearch already up on $URL"
	echo "$URL"
	exit 0
fi
if port_open "$OS_PORT"; then
	die "port $OS_PORT is in use by something that does not answer $URL (plain HTTP against a secured node, HTTPS against a plain one, a CA other than OS_TLS_DIR's, or not HTTP at all)"
fi
if port_open "$OS_TRANSPORT_PORT"; then
	die "transport port $OS_TRANSPORT_PORT is already in use (set OS_TRANSPORT_PORT)"
fi

# install_security_plugin PLAIN_HOME HOME: unless HOME is complete, copy the
# plain tree to HOME and install the security plugin zip (fetched with mvn)
# into it. The plugin's stock configuration lands in HOME/config/opensearch-security.
install_security_plugin() {
	local plain=$1 home=$2 zip version=$OS_VERSION.0 tmp log_file
	[[ -f $home/.enricher-complete ]] && return 0
	zip=$(m2_zip org.opensearch.plugin opensearch-security "$version")
	if [[ ! -s $zip ]]; then
		need_cmd mvn
		log "fetching org.opensearch.plugin:opensearch-security:$version (zip) from Maven Central"
		log_file="$(dirname "$home")/mvn-opensearch-security-$version.log"
		mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" dependency:get \
			-Dartifact="org.opensearch.plugin:opensearch-security:$version:zip" -Dtransitive=false \
			</dev/null >"$log_file" 2>&1 || {
			tail -n 40 "$log_file" >&2 || true
			die "mvn dependency:get failed for the security plugin $version (full log: $log_file); Maven Central serves it only for some OpenSearch releases, e.g. OS_VERSION=2.19.4"
		}
		[[ -s $zip ]] || die "mvn succeeded but $zip is missing"
	fi
	log "installing the security plugin into $home"
	tmp=$(clone_tree "$plain" "$home")
	env -u JAVA_HOME "OPENSEARCH_JAVA_HOME=$OS_JAVA_HOME" "OPENSEARCH_PATH_CONF=$tmp/config" \
		"$tmp/bin/opensearch-plugin" install --batch "file://$zip" >"$tmp/plugin-install.log" 2>&1 || {
		tail -n 40 "$tmp/plugin-install.log" >&2 || true
		rm -rf "$tmp"
		die "opensearch-plugin install failed"
	}
	[[ -d $tmp/config/opensearch-security ]] || {
		rm -rf "$tmp"
		die "the security plugin left no config/opensearch-security"
	}
	chmod +x "$tmp/plugins/opensearch-security/tools/"*.sh 2>/dev/null || true
	finish_tree "$tmp" "$home"
}

# ---- user, base dir, Java, fetch + unpack (once, cached) ----
setup_run_as "$OS_USER"
BASE=$(os_base_dir)
RUN_DIR=$(os_run_dir)
mkdir -p "$BASE" "$RUN_DIR"
chmod 755 "$BASE" 2>/dev/null || true
os_major=${OS_VERSION%%.*}
java_min=17
((os_major >= 3)) && java_min=21
pick_java OS_JAVA_HOME "$java_min" "OpenSearch $OS_VERSION"

OS_HOME="$BASE/opensearch-$OS_VERSION"
install_dist org.opensearch.distribution.integ-test-zip opensearch "$OS_VERSION" "$OS_HOME"
if [[ $OS_SECURITY == true ]]; then
	# A second tree with the security plugin, so the plain one stays plain.
	plain_home=$OS_HOME
	OS_HOME="$BASE/opensearch-$OS_VERSION-security"
	with_lock "$BASE/.opensearch-$OS_VERSION-security.lock" install_security_plugin "$plain_home" "$OS_HOME"
fi
if ((${#RUN_AS[@]})) && ! "${RUN_AS[@]}" test -x "$OS_HOME/bin/opensearch"; then
	die "user $OS_USER cannot reach $OS_HOME; pick another OS_CACHE"
fi

# ---- per-port run dir: config, data, logs, tmp ----
CONF="$RUN_DIR/config"
DATA="$RUN_DIR/data"
LOGS="$RUN_DIR/logs"
TMPD="$RUN_DIR/tmp"
PIDFILE="$RUN_DIR/opensearch.pid"
CLI_LOG="$LOGS/cli.log"

if pid=$(pid_alive "$PIDFILE"); then
	die "pid $pid from $PIDFILE is alive but nothing answers on $URL; run opensearch-down.sh first"
fi
rm -f "$PIDFILE"
if [[ -f $RUN_DIR/version && $(<"$RUN_DIR/version") != "$OS_VERSION" && -d $DATA ]]; then
	log "warning: $DATA was written by OpenSearch $(<"$RUN_DIR/version"); if startup fails, run opensearch-down.sh --wipe"
fi
# The security index in $DATA keeps the mode and the admin password of the start
# that created it: a node started otherwise on the same data would refuse every
# request, or serve the security index without authentication.
mode=plain
if [[ $OS_SECURITY == true ]]; then
	mode="security $(printf 'enricher:%s' "$OS_ADMIN_PASSWORD" | sha256sum | cut -c1-16)"
fi
if [[ -d $DATA && -f $RUN_DIR/mode && $(<"$RUN_DIR/mode") != "$mode" ]] && [[ -n $(ls -A "$DATA") ]]; then
	die "$DATA was written by a node started with another OS_SECURITY or OS_ADMIN_PASSWORD; run OS_PORT=$OS_PORT scripts/opensearch-down.sh --wipe first"
fi
mkdir -p "$DATA" "$LOGS" "$TMPD"
copy_stock_config "$OS_HOME/config" "$CONF" "$RUN_DIR/version" "$OS_VERSION"
echo "$OS_VERSION" >"$RUN_DIR/version"
echo "$mode" >"$RUN_DIR/mode"
if [[ $OS_SECURITY == true ]]; then
	mkdir -p "$CONF/certs"
	cp "$OS_TLS_DIR/http.crt" "$CONF/certs/node.crt"
	install -m 0600 "$OS_TLS_DIR/http.key" "$CONF/certs/node.key"
	cp "$OS_TLS_DIR/ca.crt" "$CONF/certs/ca.crt"
	# The plugin tells nodes from clients by their certificate's subject.
	node_dn=$(openssl x509 -in "$CONF/certs/node.crt" -noout -subject -nameopt RFC2253) ||
		die "cannot read the subject of $OS_TLS_DIR/http.crt"
	node_dn=$(sed 's/^subject=[[:space:]]*//' <<<"$node_dn")
	[[ -n $node_dn ]] || die "$OS_TLS_DIR/http.crt has an empty subject"
	# Only user admin (backend role admin, which the stock roles_mapping.yml
	# maps to all_access), with a bcrypt hash made by the plugin's own tool
	# (the password read from the environment, not the command line).
	hash=$(env -u JAVA_HOME "JAVA_HOME=$OS_JAVA_HOME" OS_ADMIN_PASSWORD="$OS_ADMIN_PASSWORD" \
		"$OS_HOME/plugins/opensearch-security/tools/hash.sh" -env OS_ADMIN_PASSWORD 2>"$LOGS/hash.log" | tail -n 1) ||
		die "plugins/opensearch-security/tools/hash.sh failed: $(tail -n 5 "$LOGS/hash.log")"
	[[ $hash == '$2'* ]] || die "plugins/opensearch-security/tools/hash.sh gave no bcrypt hash: $(tail -n 5 "$LOGS/hash.log")"
	cat >"$CONF/opensearch-security/internal_users.yml" <<-EOF
		# generated by scripts/opensearch-up.sh; edits are overwritten
		_meta:
		  type: "internalusers"
		  config_version: 2
		admin:
		  hash: "$hash"
		  reserved: true
		  backend_roles: ["admin"]
	EOF
fi
# The stock jvm.options writes the GC log, error files and heap dumps relative
# to the working directory, which bin/opensearch sets to the (read-only)
# OpenSearch home: point them into the run dir.
sed -i -e "s|file=logs/|file=$LOGS/|" -e "s|-XX:ErrorFile=logs/|-XX:ErrorFile=$LOGS/|" -e "s|-Xloggc:logs/|-Xloggc:$LOGS/|" \
	-e "s|-XX:HeapDumpPath=data\$|-XX:HeapDumpPath=$DATA|" "$CONF/jvm.options"

# Only settings that exist in this build (unknown ones make OpenSearch refuse
# to start): the integ-test zip has no plugins and just the transport-netty4
# module; the security settings only in the tree with the security plugin.
{
	echo "# generated by scripts/opensearch-up.sh; edits are overwritten"
	echo "cluster.name: enricher-os"
	echo "node.name: os-$OS_PORT"
	echo "network.host: 127.0.0.1"
	echo "http.port: $OS_PORT"
	echo "transport.port: $OS_TRANSPORT_PORT"
	echo "discovery.type: single-node"
	echo "path.data: $DATA"
	echo "path.logs: $LOGS"
	echo "cluster.routing.allocation.disk.threshold_enabled: false"
	echo "action.destructive_requires_name: false"
	if [[ $OS_SECURITY == true ]]; then
		echo "plugins.security.ssl.transport.pemcert_filepath: certs/node.crt"
		echo "plugins.security.ssl.transport.pemkey_filepath: certs/node.key"
		echo "plugins.security.ssl.transport.pemtrustedcas_filepath: certs/ca.crt"
		echo "plugins.security.ssl.transport.enforce_hostname_verification: false"
		echo "plugins.security.ssl.http.enabled: true"
		echo "plugins.security.ssl.http.pemcert_filepath: certs/node.crt"
		echo "plugins.security.ssl.http.pemkey_filepath: certs/node.key"
		echo "plugins.security.ssl.http.pemtrustedcas_filepath: certs/ca.crt"
		echo "plugins.security.allow_default_init_securityindex: true"
		echo "plugins.security.nodes_dn: ['${node_dn//\'/\'\'}']"
		echo "plugins.security.restapi.roles_enabled: [\"all_access\"]"
		echo "plugins.security.audit.type: noop"
	elif [[ -d $OS_HOME/plugins/opensearch-security ]]; then
		echo "plugins.security.disabled: true"
	fi
} >"$CONF/opensearch.yml"
: >"$CLI_LOG"
if ((${#RUN_AS[@]})); then
	chown -R "$OS_USER:$OS_USER" "$RUN_DIR"
fi

stop_started() {
	local pid
	if pid=$(pid_alive "$PIDFILE"); then
		stop_pid "$pid" opensearch 30
	fi
	rm -f "$PIDFILE"
}

log "starting OpenSearch $OS_VERSION on $URL (home $OS_HOME, Java $(java_major "$OS_JAVA_HOME"), run dir $RUN_DIR)"
start=$(now_s)
# bin/opensearch -d returns before the node has started and tells nothing about
# failures; run it in the foreground, detached in its own session, and watch
# the launcher: if it exits, the node is gone. -p writes the server's pid, -q
# keeps the server log (in $LOGS) off the console, i.e. out of cli.log.
(
	close_extra_fds
	exec setsid "${RUN_AS[@]}" env -u JAVA_HOME -u OS_ADMIN_PASSWORD \
		"OPENSEARCH_HOME=$OS_HOME" \
		"OPENSEARCH_PATH_CONF=$CONF" \
		"OPENSEARCH_JAVA_HOME=$OS_JAVA_HOME" \
		"OPENSEARCH_JAVA_OPTS=$OS_JAVA_OPTS" \
		"OPENSEARCH_TMPDIR=$TMPD" \
		"$OS_HOME/bin/opensearch" -q -p "$PIDFILE" </dev/null >>"$CLI_LOG" 2>&1
) &
launcher=$!

rc=0
wait_ready "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" "$OS_START_TIMEOUT" "$launcher" "${CURL_AUTH[@]}" || rc=$?
if ((rc != 0)); then
	show_server_logs "$CLI_LOG" "$LOGS" enricher-os
	stop_started
	((rc == 2)) && die "OpenSearch exited before reaching yellow"
	die "OpenSearch did not reach yellow within ${OS_START_TIMEOUT}s"
fi
os_probe
log "OpenSearch ${PROBE_VERSION:-?} up in $(($(now_s) - start))s (pid $(pid_alive "$PIDFILE" || echo '?'), logs $LOGS)"
echo "$URL"
