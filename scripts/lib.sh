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
			sleep 1
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

# ---- Elasticsearch specifics shared by es-up.sh and es-down.sh ----

ES_VERSION=${ES_VERSION:-8.19.9}
ES_PORT=${ES_PORT:-9200}
ES_USER=${ES_USER:-elasticsearch}

# es_base_dir: where the unpacked ES tree and run dirs live. Normally
# $ENRICHER_CACHE; as root, ES runs as $ES_USER, which must be able to reach
# that directory. If it can't (e.g. /root is 0700), /var/cache/enricher is used
# instead. ES_CACHE overrides all of this.
es_base_dir() {
	if [[ -n ${ES_CACHE:-} ]]; then
		printf '%s\n' "$ES_CACHE"
		return
	fi
	if is_root && id -u "$ES_USER" >/dev/null 2>&1; then
		mkdir -p "$ENRICHER_CACHE"
		if ! runuser -u "$ES_USER" -- test -x "$ENRICHER_CACHE" 2>/dev/null; then
			printf '%s\n' /var/cache/enricher
			return
		fi
	fi
	printf '%s\n' "$ENRICHER_CACHE"
}

es_run_dir() { printf '%s/run/es-%s\n' "$(es_base_dir)" "$ES_PORT"; }
