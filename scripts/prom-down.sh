#!/usr/bin/env bash
# Stop the Prometheus started by prom-up.sh on $PROM_PORT (default 9090) and
# delete its temp storage. Exits 0 when nothing is running.
set -euo pipefail

_log_prefix=prom-down
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROM_PORT=${PROM_PORT:-9090}
[[ $PROM_PORT =~ ^[0-9]+$ ]] || die "PROM_PORT must be a number, got '$PROM_PORT'"
(($# == 0)) || die "usage: prom-down.sh"

RUN_DIR="$ENRICHER_CACHE/run/prom-$PROM_PORT"
PIDFILE="$RUN_DIR/prometheus.pid"

if pid=$(pid_alive "$PIDFILE"); then
	log "stopping Prometheus on port $PROM_PORT (pid $pid)"
	stop_pid "$pid" prometheus "${PROM_STOP_TIMEOUT:-30}"
else
	log "no Prometheus running from $RUN_DIR"
	if port_open "$PROM_PORT"; then
		log "warning: something still listens on 127.0.0.1:$PROM_PORT (not started by prom-up.sh)"
	fi
fi
rm -f "$PIDFILE"

if [[ -f $RUN_DIR/storage-path ]]; then
	storage=$(cat "$RUN_DIR/storage-path")
	case $storage in
	"$RUN_DIR"/tsdb.*) rm -rf "$storage" ;;
	*) log "warning: not removing unexpected storage path $storage" ;;
	esac
	rm -f "$RUN_DIR/storage-path"
fi
