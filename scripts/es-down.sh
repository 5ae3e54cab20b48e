#!/usr/bin/env bash
# Stop the Elasticsearch started by es-up.sh on $ES_PORT (default 9200).
#   es-down.sh          SIGTERM via the pid file, SIGKILL after ES_STOP_TIMEOUT (30s)
#   es-down.sh --wipe   also delete its data dir (fresh cluster next time)
# Exits 0 when nothing is running.
set -euo pipefail

_log_prefix=es-down
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wipe=false
for arg in "$@"; do
	case $arg in
	--wipe) wipe=true ;;
	-h | --help)
		sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*) die "unknown argument: $arg (usage: es-down.sh [--wipe])" ;;
	esac
done
[[ $ES_PORT =~ ^[0-9]+$ ]] || die "ES_PORT must be a number, got '$ES_PORT'"

RUN_DIR=$(es_run_dir)
PIDFILE="$RUN_DIR/es.pid"

if pid=$(pid_alive "$PIDFILE"); then
	log "stopping Elasticsearch on port $ES_PORT (pid $pid)"
	stop_pid "$pid" elasticsearch "${ES_STOP_TIMEOUT:-30}"
else
	log "no Elasticsearch running from $RUN_DIR"
	if port_open "$ES_PORT"; then
		log "warning: something still listens on 127.0.0.1:$ES_PORT (not started by es-up.sh from $RUN_DIR)"
	fi
fi
rm -f "$PIDFILE"

if [[ $wipe == true ]]; then
	log "wiping $RUN_DIR/data"
	rm -rf "$RUN_DIR/data"
fi
