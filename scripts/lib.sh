# shellcheck shell=bash
# Shared helpers for the es-*/prom-* harness scripts. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Everything here is non-interactive (CI=true, no tty) and bash-only.

# Where downloaded/unpacked tools and per-port run dirs live (never the repo).
ENRICHER_CACHE=${ENRICHER_CACHE:-${HOME:-/tmp}/.cache/enricher}

# _log_prefix is set by each script (e.g. "es-up").
_log_prefix=${_log_prefix:-harness}

log() { printf '%s: %s\n' "$_log_prefix" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$_log_prefix" "$*" >&2
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"
	done
}

# now_s: seconds since the epoch.
now_s() { date +%s; }

# http_code URL [curl args...]: prints the HTTP status (000 when nothing answers).
http_code() {
	local url=$1
	shift
	curl -s -o /dev/null -w '%{http_code}' --connect-timeout 2 --max-time 10 "$@" "$url" 2>/dev/null || true
}

# wait_http URL TIMEOUT_S [curl args...]: poll until URL answers 2xx.
# Returns 1 on timeout. Extra args go to curl (e.g. -u user:pass).
wait_http() {
	local url=$1 timeout=$2 deadline code
	shift 2
	deadline=$(($(now_s) + timeout))
	while :; do
		code=$(http_code "$url" "$@")
		[[ $code == 2?? ]] && return 0
		(($(now_s) >= deadline)) && return 1
		sleep 1
	done
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# proc_alive PID: the process exists and is not a zombie (in containers PID 1
# may never reap our daemons).
proc_alive() {
	local st
	kill -0 "$1" 2>/dev/null || return 1
	st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
	[[ $st != Z ]]
}

# pid_alive PIDFILE: true when the pid file names a live process (pid echoed).
pid_alive() {
	local f=$1 pid
	[[ -s $f ]] || return 1
	pid=$(tr -dc '0-9' <"$f")
	[[ -n $pid ]] || return 1
	proc_alive "$pid" || return 1
	printf '%s\n' "$pid"
}

# stop_pid PID NAME [TIMEOUT_S]: SIGTERM, wait, then SIGKILL.
stop_pid() {
	local pid=$1 name=$2 timeout=${3:-30} deadline
	kill -TERM "$pid" 2>/dev/null || return 0
	deadline=$(($(now_s) + timeout))
	while proc_alive "$pid"; do
		if (($(now_s) >= deadline)); then
			log "$name (pid $pid) still alive after ${timeout}s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			# A killed JVM can take a few seconds to leave while the
			# kernel tears down its mappings; wait for it, bounded.
			deadline=$(($(now_s) + 15))
			while proc_alive "$pid" && (($(now_s) < deadline)); do
				sleep 0.5
			done
			break
		fi
		sleep 0.5
	done
	if proc_alive "$pid"; then
		die "$name (pid $pid) survived SIGKILL"
	fi
	log "$name (pid $pid) stopped"
}

# close_extra_fds: close every fd above 2 in the current (sub)shell, so a
# daemon started next doesn't keep the caller's pipes (CI runners, make's
# jobserver, $(...) captures) open. Use in a subshell right before exec.
# down_args parses the arguments every *-down.sh takes: --wipe (sets wipe=true) and -h.
down_args() {
	wipe=false
	local arg
	for arg in "$@"; do
		case $arg in
		--wipe) wipe=true ;;
		-h | --help)
			sed -n '2,5s/^# \{0,1\}//p' "$0"
			exit 0
			;;
		*) die "unknown argument: $arg (usage: $(basename "$0") [--wipe])" ;;
		esac
	done
}

# down_server NAME PORT RUN_DIR PIDFILE TIMEOUT: stop the server a *-up.sh started from
# RUN_DIR (SIGTERM, SIGKILL after TIMEOUT seconds), then wipe its data when wipe=true.
down_server() {
	local name=$1 port=$2 run_dir=$3 pidfile=$4 timeout=$5 pid
	[[ $port =~ ^[0-9]+$ ]] || die "the port must be a number, got '$port'"
	if pid=$(pid_alive "$pidfile"); then
		log "stopping $name on port $port (pid $pid)"
		stop_pid "$pid" "$name" "$timeout"
	else
		log "no $name running from $run_dir"
		if port_open "$port"; then
			log "warning: something still listens on 127.0.0.1:$port (not started from $run_dir)"
		fi
	fi
	rm -f "$pidfile"
	if [[ $wipe == true ]]; then
		log "wiping $run_dir/data"
		rm -rf "$run_dir/data"
	fi
}

close_extra_fds() {
	local p fd
	for p in /proc/self/fd/*; do
		fd=${p##*/}
		if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
			{ exec {fd}>&-; } 2>/dev/null || true
		fi
	done
}

# with_lock FILE CMD...: run CMD under an exclusive flock (parallel make/CI safe).
with_lock() {
	local f=$1
	shift
	mkdir -p "$(dirname "$f")"
	(
		flock -w 600 9 || die "could not lock $f"
		"$@"
	) 9>"$f"
}

# ---- JVM search servers from Maven Central zips (Elasticsearch, OpenSearch) ----

M2_REPO=${M2_REPO:-${HOME:-/tmp}/.m2/repository}

# server_base_dir USER [OVERRIDE]: where an unpacked server tree and its run
# dirs live. Normally $ENRICHER_CACHE; as root, the server runs as USER, which
# must be able to reach that directory. If it can't (e.g. /root is 0700),
# /var/cache/enricher is used instead. A non-empty OVERRIDE wins.
server_base_dir() {
	local user=$1 override=${2:-}
	if [[ -n $override ]]; then
		printf '%s\n' "$override"
		return
	fi
	if is_root && id -u "$user" >/dev/null 2>&1; then
		mkdir -p "$ENRICHER_CACHE"
		if ! runuser -u "$user" -- test -x "$ENRICHER_CACHE" 2>/dev/null; then
			printf '%s\n' /var/cache/enricher
			return
		fi
	fi
	printf '%s\n' "$ENRICHER_CACHE"
}

# setup_run_as USER: Elasticsearch and OpenSearch refuse to run as root. As
# root, sets RUN_AS=(runuser -u USER --), creating USER as a system user when
# missing; otherwise RUN_AS=().
setup_run_as() {
	local user=$1
	RUN_AS=()
	is_root || return 0
	if ! id -u "$user" >/dev/null 2>&1; then
		log "creating system user $user"
		# (a parallel run may have created it meanwhile)
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$user" || id -u "$user" >/dev/null 2>&1 ||
			die "useradd $user failed"
	fi
	need_cmd runuser
	RUN_AS=(runuser -u "$user" --)
}

# java_major JAVA_HOME: the feature release (17, 21, 25, ...) of JAVA_HOME/bin/java.
java_major() {
	local home=$1 v=
	if [[ -f $home/release ]]; then
		v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")
	fi
	if [[ -z $v ]]; then
		v=$("$home/bin/java" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n1)
	fi
	[[ $v == 1 ]] && v=8 # "1.8.0_..."
	printf '%s\n' "${v:-0}"
}

# find_java MIN: prints a Java home whose major version is at least MIN: the
# oldest such JDK under /usr/lib/jvm (so Java 17 stays the choice where 17 is
# enough, and e.g. a Temurin 25 is picked where 21+ is needed), else the java
# on PATH if it is new enough. Returns 1 when there is none.
find_java() {
	local min=$1 j m best='' bestm=0 onpath
	for j in /usr/lib/jvm/*/; do
		j=${j%/}
		[[ -L $j || ! -x $j/bin/java ]] && continue
		m=$(java_major "$j")
		((m >= min)) || continue
		if [[ -z $best ]] || ((m < bestm)); then
			best=$j
			bestm=$m
		fi
	done
	if [[ -z $best ]] && command -v java >/dev/null 2>&1; then
		onpath=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
		if (($(java_major "$onpath") >= min)); then
			best=$onpath
		fi
	fi
	[[ -n $best ]] || return 1
	printf '%s\n' "$best"
}

# pick_java VAR MIN WHAT: leaves $VAR alone when it is set (warning when it is
# older than MIN), else sets it with find_java MIN. Dies when there is no Java.
pick_java() {
	local var=$1 min=$2 what=$3 home
	home=${!var:-}
	if [[ -n $home ]]; then
		[[ -x $home/bin/java ]] || die "$var=$home has no bin/java"
		if (($(java_major "$home") < min)); then
			log "warning: $var=$home is Java $(java_major "$home"); $what needs Java $min+"
		fi
		return 0
	fi
	home=$(find_java "$min") || die "no Java $min+ found in /usr/lib/jvm or on PATH; set $var ($what needs Java $min+)"
	printf -v "$var" '%s' "$home"
}

# m2_zip GROUP ARTIFACT VERSION: the zip's path in $M2_REPO.
m2_zip() {
	printf '%s/%s/%s/%s/%s-%s.zip\n' "$M2_REPO" "${1//.//}" "$2" "$3" "$2" "$3"
}

# install_dist GROUP ARTIFACT VERSION HOME: unless HOME is complete, fetch the
# zip GROUP:ARTIFACT:VERSION into $M2_REPO with mvn (when not there yet) and
# unpack its ARTIFACT-VERSION/ directory to HOME, readable by everyone. Runs
# under a lock next to HOME, so parallel starts unpack once.
install_dist() {
	with_lock "$(dirname "$4")/.$2-$3.lock" _install_dist "$@"
}
_install_dist() {
	local group=$1 artifact=$2 version=$3 home=$4 base zip top tmp mvn_log
	[[ -f $home/.enricher-complete ]] && return 0
	base=$(dirname "$home")
	zip=$(m2_zip "$group" "$artifact" "$version")
	top=$artifact-$version
	if [[ ! -s $zip ]]; then
		need_cmd mvn
		log "fetching $group:$artifact:$version (zip) from Maven Central"
		mvn_log="$base/mvn-$top.log"
		if ! mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" dependency:get \
			-Dartifact="$group:$artifact:$version:zip" \
			-Dtransitive=false </dev/null >"$mvn_log" 2>&1; then
			tail -n 40 "$mvn_log" >&2 || true
			die "mvn dependency:get failed (full log: $mvn_log)"
		fi
		[[ -s $zip ]] || die "mvn succeeded but $zip is missing"
	fi
	need_cmd unzip
	log "unpacking $zip into $home"
	tmp=$(mktemp -d "$base/.unpack.XXXXXX")
	unzip -q "$zip" -d "$tmp" || {
		rm -rf "$tmp"
		die "unzip failed"
	}
	[[ -d $tmp/$top/bin && -d $tmp/$top/config ]] || {
		rm -rf "$tmp"
		die "unexpected zip layout (no $top/bin, $top/config)"
	}
	rm -rf "$home"
	mv "$tmp/$top" "$home"
	rmdir "$tmp"
	# Readable by the unprivileged server user; the server writes only to its run dir.
	chmod -R a+rX,go-w "$home"
	touch "$home/.enricher-complete"
}

# clone_tree SRC HOME: prints a new folder beside HOME holding a copy of the server tree
# SRC, without SRC's completion mark, for a variant of it (plugins added) that
# finish_tree then puts in HOME's place.
clone_tree() {
	local src=$1 home=$2 tmp
	tmp=$(mktemp -d "$(dirname "$home")/.variant.XXXXXX")
	cp -a "$src/." "$tmp/" || {
		rm -rf "$tmp"
		die "cannot copy $src to $tmp"
	}
	rm -f "$tmp/.enricher-complete"
	printf '%s\n' "$tmp"
}

# finish_tree TMP HOME: TMP (from clone_tree) readable by everyone, in HOME's place,
# marked complete.
finish_tree() {
	local tmp=$1 home=$2
	chmod -R a+rX,go-w "$tmp"
	rm -rf "$home"
	mv "$tmp" "$home"
	touch "$home/.enricher-complete"
}

# copy_stock_config HOME_CONFIG CONF VERSION_FILE VERSION: the distribution's
# config (jvm.options, log4j2, users, roles.yml, ...) is copied into CONF once
# per version, so files added to CONF (file-realm users/roles) survive restarts;
# later starts only add files that are missing.
copy_stock_config() {
	local src=$1 conf=$2 vfile=$3 version=$4 f
	mkdir -p "$conf"
	if [[ ! -f $vfile || $(<"$vfile") != "$version" ]]; then
		cp -Rf "$src/." "$conf/"
		return
	fi
	# (not "cp -n": its exit status differs between coreutils versions)
	while IFS= read -r -d '' f; do
		if [[ ! -e $conf/$f ]]; then
			mkdir -p "$(dirname "$conf/$f")"
			cp -f "$src/$f" "$conf/$f"
		fi
	done < <(cd "$src" && find . -type f -print0)
}

# wait_ready URL TIMEOUT_S PID [curl args...]: like wait_http, but gives up at
# once (returning 2) when process PID dies; PID may be empty.
wait_ready() {
	local url=$1 timeout=$2 pid=$3 deadline code
	shift 3
	deadline=$(($(now_s) + timeout))
	while :; do
		code=$(http_code "$url" "$@")
		[[ $code == 2?? ]] && return 0
		if [[ -n $pid ]] && ! proc_alive "$pid"; then
			return 2
		fi
		(($(now_s) >= deadline)) && return 1
		sleep 1
	done
}

# show_server_logs CLI_LOG LOGS_DIR CLUSTER_NAME: the tails worth reading
# after a failed start (launcher output, then the server log).
show_server_logs() {
	local cli=$1 logs=$2 cluster=$3 f
	log "---- $cli ----"
	tail -n 40 "$cli" >&2 || true
	for f in "$logs/$cluster.log" "$logs/${cluster}_server.json"; do
		[[ -f $f ]] || continue
		log "---- $f (tail) ----"
		tail -n 60 "$f" >&2 || true
		break
	done
}

# ---- Elasticsearch specifics shared by es-up.sh, es-down.sh and cluster-*.sh ----

ES_VERSION=${ES_VERSION:-8.19.9}
ES_PORT=${ES_PORT:-9200}
ES_USER=${ES_USER:-elasticsearch}

# es_base_dir: server_base_dir for $ES_USER; ES_CACHE overrides.
es_base_dir() { server_base_dir "$ES_USER" "${ES_CACHE:-}"; }

es_run_dir() { printf '%s/run/es-%s\n' "$(es_base_dir)" "$ES_PORT"; }

# es_java_min VERSION: the oldest Java that Elasticsearch VERSION runs on
# (8.x: 17; 9.x: 21). The integ-test zip bundles no JDK.
es_java_min() {
	local major=${1%%.*}
	if ((major >= 9)); then echo 21; else echo 17; fi
}

# es_install BASE: unpack Elasticsearch $ES_VERSION into BASE (once); prints its home.
es_install() {
	local home="$1/elasticsearch-$ES_VERSION"
	install_dist org.elasticsearch.distribution.integ-test-zip elasticsearch "$ES_VERSION" "$home"
	printf '%s\n' "$home"
}

# es_prepare_node ES_HOME RUN_DIR: the run dir's config/, data/, logs/, tmp/
# with the stock config, and "version". Sets CONF DATA LOGS TMPD PIDFILE CLI_LOG.
# Warns when data/ was written by another version.
es_prepare_node() {
	local home=$1 run=$2
	CONF="$run/config"
	DATA="$run/data"
	LOGS="$run/logs"
	TMPD="$run/tmp"
	PIDFILE="$run/es.pid"
	CLI_LOG="$LOGS/cli.log"
	if [[ -f $run/version && $(<"$run/version") != "$ES_VERSION" && -d $DATA ]]; then
		log "warning: $DATA was written by Elasticsearch $(<"$run/version"); if startup fails, wipe it (--wipe on down)"
	fi
	mkdir -p "$CONF" "$DATA" "$LOGS" "$TMPD"
	copy_stock_config "$home/config" "$CONF" "$run/version" "$ES_VERSION"
	echo "$ES_VERSION" >"$run/version"
}

# es_common_settings ES_HOME: elasticsearch.yml lines every node of ours gets
# (path.* from es_prepare_node). Only settings that exist in this build: the
# integ-test zip ships just the transport-netty4, x-pack-core, x-pack-security
# and apm modules (8.19 and 9.x alike), and unknown settings make Elasticsearch
# refuse to start.
es_common_settings() {
	local home=$1
	echo "network.host: 127.0.0.1"
	echo "path.data: $DATA"
	echo "path.logs: $LOGS"
	echo "cluster.routing.allocation.disk.threshold_enabled: false"
	echo "action.destructive_requires_name: false"
	if [[ -d $home/modules/ingest-geoip ]]; then
		echo "ingest.geoip.downloader.enabled: false"
	fi
}

# es_node_env ES_HOME JAVA_HOME JAVA_OPTS: sets ES_ENV, the env(1) prefix for
# bin/elasticsearch* (uses CONF and TMPD from es_prepare_node).
es_node_env() {
	ES_ENV=(
		env -u JAVA_HOME
		"ES_HOME=$1"
		"ES_PATH_CONF=$CONF"
		"ES_JAVA_HOME=$2"
		"ES_JAVA_OPTS=$3"
		"ES_TMPDIR=$TMPD"
	)
}

# es_launch ES_HOME TIMEOUT_S: bin/elasticsearch -d as ${RUN_AS[@]} with
# ES_ENV; -d returns once the node has started, -p writes the server's pid to
# PIDFILE. Output goes to CLI_LOG. Returns non-zero when it failed or timed out.
es_launch() {
	local home=$1 timeout=$2
	(
		close_extra_fds
		exec timeout --kill-after=10 "$timeout" \
			"${RUN_AS[@]}" "${ES_ENV[@]}" "$home/bin/elasticsearch" -d -p "$PIDFILE" </dev/null >>"$CLI_LOG" 2>&1
	)
}

# ---- Elasticsearch cluster shared by cluster-up.sh, cluster-down.sh, cluster-node.sh ----
# Three nodes (one per HTTP port) of the same $ES_VERSION build es-up.sh uses,
# all master-eligible data nodes, cluster "enricher-cluster", security off.

# cluster_init: reads CLUSTER_PORTS ("9250 9251 9252", commas work too) or
# CLUSTER_BASE_PORT (9250: it and the next two), and CLUSTER_TRANSPORT_PORTS
# (default: each HTTP port + 100). Sets CL_HTTP, CL_TRANSPORT (arrays, node i
# at index i-1), CL_N and CL_DIR, the cluster's run dir (one node-I dir each).
cluster_init() {
	local p base
	if [[ -n ${CLUSTER_PORTS:-} ]]; then
		read -r -a CL_HTTP <<<"${CLUSTER_PORTS//,/ }"
	else
		base=${CLUSTER_BASE_PORT:-9250}
		[[ $base =~ ^[0-9]+$ ]] || die "CLUSTER_BASE_PORT must be a number, got '$base'"
		CL_HTTP=("$base" "$((base + 1))" "$((base + 2))")
	fi
	CL_N=${#CL_HTTP[@]}
	((CL_N >= 1)) || die "CLUSTER_PORTS is empty"
	if [[ -n ${CLUSTER_TRANSPORT_PORTS:-} ]]; then
		read -r -a CL_TRANSPORT <<<"${CLUSTER_TRANSPORT_PORTS//,/ }"
		((${#CL_TRANSPORT[@]} == CL_N)) ||
			die "CLUSTER_TRANSPORT_PORTS needs $CL_N ports, one per HTTP port (${CL_HTTP[*]})"
	else
		CL_TRANSPORT=()
		for p in "${CL_HTTP[@]}"; do
			[[ $p =~ ^[0-9]+$ ]] || die "cluster port must be a number, got '$p'"
			CL_TRANSPORT+=("$((p + 100))")
		done
	fi
	for p in "${CL_HTTP[@]}" "${CL_TRANSPORT[@]}"; do
		[[ $p =~ ^[0-9]+$ ]] || die "cluster port must be a number, got '$p'"
	done
	CL_DIR="$(es_base_dir)/run/cluster-${CL_HTTP[0]}"
}

# cluster_check_node I: a node number within 1..CL_N.
cluster_check_node() {
	if [[ ! $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > CL_N)); then
		die "node must be 1..$CL_N, got '$1'"
	fi
}
cluster_node_url() { printf 'http://127.0.0.1:%s\n' "${CL_HTTP[$1 - 1]}"; }
cluster_node_pidfile() { printf '%s/node-%s/es.pid\n' "$CL_DIR" "$1"; }

# cluster_urls: every node's URL, comma-separated (the form ELASTICSEARCH_URL
# takes in go-elasticsearch).
cluster_urls() {
	local i out=''
	for ((i = 1; i <= CL_N; i++)); do
		out+=${out:+,}$(cluster_node_url "$i")
	done
	printf '%s\n' "$out"
}

# cluster_node_state I: prints "up" (our pid alive and the port answers HTTP),
# "starting" (our pid alive, no answer yet), "foreign" (the port answers but
# the node is not ours) or "down".
cluster_node_state() {
	local i=$1 code
	code=$(http_code "$(cluster_node_url "$i")/_nodes/_local?filter_path=nodes.*.name")
	if pid_alive "$(cluster_node_pidfile "$i")" >/dev/null; then
		if [[ $code == 000 ]]; then echo starting; else echo up; fi
	elif [[ $code != 000 ]] || port_open "${CL_HTTP[$i - 1]}"; then
		echo foreign
	else
		echo down
	fi
}

# cluster_running: how many nodes of ours have a live pid.
cluster_running() {
	local i n=0
	for ((i = 1; i <= CL_N; i++)); do
		if pid_alive "$(cluster_node_pidfile "$i")" >/dev/null; then
			n=$((n + 1))
		fi
	done
	echo "$n"
}

# es_prepare_home: the user, Java and Elasticsearch tree every node start needs
# (es-up.sh, the cluster). Sets RUN_AS, ES_BASE, ES_HOME, ES_JAVA_HOME.
es_prepare_home() {
	setup_run_as "$ES_USER"
	ES_BASE=$(es_base_dir)
	mkdir -p "$ES_BASE"
	chmod 755 "$ES_BASE" 2>/dev/null || true
	pick_java ES_JAVA_HOME "$(es_java_min "$ES_VERSION")" "Elasticsearch $ES_VERSION"
	ES_HOME=$(es_install "$ES_BASE")
	if ((${#RUN_AS[@]})) && ! "${RUN_AS[@]}" test -x "$ES_HOME/bin/elasticsearch"; then
		die "user $ES_USER cannot reach $ES_HOME; pick another ES_CACHE"
	fi
}

# cluster_prepare: es_prepare_home, and the cluster's own folder.
cluster_prepare() {
	es_prepare_home
	mkdir -p "$CL_DIR"
}

# cluster_start_node I: writes node I's config and runs bin/elasticsearch -d
# (returns once the node has started; it has joined the cluster when a master
# was found within 30 s). Run it in a subshell: it sets the es_prepare_node
# globals. Needs cluster_prepare.
cluster_start_node() {
	local i=$1 j seeds='' masters='' run http tp
	http=${CL_HTTP[$i - 1]}
	tp=${CL_TRANSPORT[$i - 1]}
	run="$CL_DIR/node-$i"
	for ((j = 1; j <= CL_N; j++)); do
		seeds+=${seeds:+, }\"127.0.0.1:${CL_TRANSPORT[$j - 1]}\"
		masters+=${masters:+, }\"node-$j\"
	done
	port_open "$tp" && die "node $i: transport port $tp is already in use (set CLUSTER_TRANSPORT_PORTS)"
	rm -f "$run/es.pid"
	es_prepare_node "$ES_HOME" "$run" # sets CONF DATA LOGS TMPD PIDFILE CLI_LOG
	{
		echo "# generated by scripts/cluster-*.sh; edits are overwritten"
		echo "cluster.name: enricher-cluster"
		echo "node.name: node-$i"
		echo "http.port: $http"
		echo "transport.port: $tp"
		echo "discovery.seed_hosts: [$seeds]"
		# Only for forming the cluster the first time: Elasticsearch warns when
		# it stays set afterwards (cluster-up.sh writes "formed" once it has).
		if [[ ! -f $CL_DIR/formed ]]; then
			echo "cluster.initial_master_nodes: [$masters]"
		fi
		es_common_settings "$ES_HOME"
		echo "xpack.security.enabled: false"
	} >"$CONF/elasticsearch.yml"
	: >"$CLI_LOG"
	if ((${#RUN_AS[@]})); then
		chown -R "$ES_USER:$ES_USER" "$run"
	fi
	es_node_env "$ES_HOME" "$ES_JAVA_HOME" "${CLUSTER_JAVA_OPTS:--Xms512m -Xmx512m}" # sets ES_ENV
	log "starting node $i (node-$i) on $(cluster_node_url "$i"), transport $tp, run dir $run"
	if ! es_launch "$ES_HOME" "${CLUSTER_START_TIMEOUT:-180}"; then
		show_server_logs "$CLI_LOG" "$LOGS" enricher-cluster
		return 1
	fi
}

# cluster_stop_node I [SIGNAL]: stop node I (TERM, then KILL after
# ES_STOP_TIMEOUT) or, with SIGNAL KILL, kill it at once. 0 when it was not running.
cluster_stop_node() {
	local i=$1 sig=${2:-TERM} pidfile pid
	pidfile=$(cluster_node_pidfile "$i")
	if ! pid=$(pid_alive "$pidfile"); then
		log "node $i is not running"
		rm -f "$pidfile"
		return 0
	fi
	if [[ $sig == KILL ]]; then
		log "killing node $i (pid $pid) with SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		while proc_alive "$pid"; do sleep 0.2; done
	else
		log "stopping node $i on port ${CL_HTTP[$i - 1]} (pid $pid)"
		stop_pid "$pid" "node $i" "${ES_STOP_TIMEOUT:-30}"
	fi
	rm -f "$pidfile"
}

# cluster_wait_health URL NODES TIMEOUT_S: until the cluster seen from URL has
# NODES nodes and is yellow or green. 1 on timeout.
cluster_wait_health() {
	wait_http "$1/_cluster/health?wait_for_nodes=$2&wait_for_status=yellow&timeout=5s" "$3"
}

# ---- OpenSearch specifics shared by opensearch-up.sh and opensearch-down.sh ----

OS_VERSION=${OS_VERSION:-2.19.6}
OS_PORT=${OS_PORT:-9201}
OS_USER=${OS_USER:-opensearch}

# os_base_dir: server_base_dir for $OS_USER; OS_CACHE overrides.
os_base_dir() { server_base_dir "$OS_USER" "${OS_CACHE:-}"; }

os_run_dir() { printf '%s/run/opensearch-%s\n' "$(os_base_dir)" "$OS_PORT"; }

# ---- Prometheus (Debian package) shared by prom-up.sh and test-deps.sh ----

# The package's postinst would start its own prometheus on :9090 through
# invoke-rc.d; a policy-rc.d that answers 101 forbids that. Anything the
# package started anyway is stopped afterwards.
# stop_package_prometheus: stop the Debian service's daemon (runs as user
# "prometheus", listens on :9090) if the postinst or an init script started it.
# Returns 1 when there was none.
stop_package_prometheus() {
	local pid found=1
	for pid in $(pgrep -u prometheus -x prometheus 2>/dev/null || true); do
		log "stopping prometheus pid $pid started by the Debian package"
		stop_pid "$pid" "package prometheus" 15
		found=0
	done
	return "$found"
}

install_prometheus() {
	command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && return 0
	is_root || die "prometheus/promtool not installed; run as root or: apt-get install prometheus"
	need_cmd apt-get apt-cache
	export DEBIAN_FRONTEND=noninteractive
	local policy=/usr/sbin/policy-rc.d rc=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# temporary, from enricher scripts/prom-up.sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		# install_prometheus runs in with_lock's subshell, so this trap is local.
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	local apt_log="$ENRICHER_CACHE/apt-prometheus.log" cand
	mkdir -p "$ENRICHER_CACHE"
	: >"$apt_log"
	# (no "apt-cache ... | grep -q": with pipefail, SIGPIPE would fail it)
	cand=$(apt-cache policy prometheus 2>/dev/null || true)
	if [[ $cand != *"Candidate: "[0-9]* ]]; then
		log "apt-get update"
		apt-get update -qq >>"$apt_log" 2>&1 || rc=$?
	fi
	if ((rc == 0)); then
		log "apt-get install prometheus (log: $apt_log)"
		if ! apt-get install -y -qq --no-install-recommends prometheus </dev/null >>"$apt_log" 2>&1; then
			log "install failed; retrying after apt-get update"
			rc=0
			apt-get update -qq >>"$apt_log" 2>&1 || rc=$?
			if ((rc == 0)); then
				apt-get install -y -qq --no-install-recommends prometheus </dev/null >>"$apt_log" 2>&1 || rc=$?
			fi
		fi
	fi
	if ((rc != 0)); then
		tail -n 30 "$apt_log" >&2 || true
		die "installing prometheus failed (full log: $apt_log)"
	fi
	stop_package_prometheus || true
	command -v promtool >/dev/null 2>&1 || die "promtool missing after installing prometheus"
	log "installed prometheus $(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || echo '?')"
}
# ensure_prometheus: prometheus and promtool on PATH, installing Debian's package
# (as root) when missing; never leaves the package's own service running.
ensure_prometheus() {
	with_lock "$ENRICHER_CACHE/.prom-install.lock" install_prometheus
}
