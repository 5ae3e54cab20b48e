#!/usr/bin/env bash
# Start a throwaway Prometheus on 127.0.0.1 for tests (no Docker, no systemd).
#
#   prom-up.sh [CONFIG]      CONFIG defaults to $PROM_CONFIG; without either a
#                            self-scrape config is generated.
#
# Installs Debian's "prometheus" package when prometheus/promtool are missing
# (root only; the package's own service is never left running). The config is
# checked with promtool, storage is a fresh temp dir under the cache, the pid
# file and log live in $ENRICHER_CACHE/run/prom-$PROM_PORT. Idempotent: if our
# Prometheus is already up with the same config it is reloaded, with another
# config it is restarted. --web.enable-lifecycle is on (POST /-/reload works).
# Prints the URL last (stdout); everything else goes to stderr.
#
# Environment (all optional):
#   PROM_PORT           9090
#   PROM_CONFIG         config file (when no argument is given)
#   PROM_START_TIMEOUT  60 seconds to wait for /-/ready
#   PROM_ARGS           extra prometheus flags (word-split)
#   ENRICHER_CACHE      $HOME/.cache/enricher
set -euo pipefail

_log_prefix=prom-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROM_PORT=${PROM_PORT:-9090}
PROM_START_TIMEOUT=${PROM_START_TIMEOUT:-60}
[[ $PROM_PORT =~ ^[0-9]+$ ]] || die "PROM_PORT must be a number, got '$PROM_PORT'"
(($# <= 1)) || die "usage: prom-up.sh [CONFIG]"
CONFIG=${1:-${PROM_CONFIG:-}}
need_cmd curl

URL="http://127.0.0.1:${PROM_PORT}"
RUN_DIR="$ENRICHER_CACHE/run/prom-$PROM_PORT"
PIDFILE="$RUN_DIR/prometheus.pid"
LOGFILE="$RUN_DIR/prometheus.log"

# ---- install (Debian package; see lib.sh) ----
ensure_prometheus

# ---- config ----
mkdir -p "$RUN_DIR"
if [[ -z $CONFIG ]]; then
	CONFIG="$RUN_DIR/self-scrape.yml"
	log "no config given; using a self-scrape config ($CONFIG)"
	cat >"$CONFIG" <<EOF
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:${PROM_PORT}"]
EOF
fi
[[ -f $CONFIG ]] || die "config file not found: $CONFIG"
CONFIG=$(realpath "$CONFIG")
if ! out=$(promtool check config "$CONFIG" 2>&1); then
	printf '%s\n' "$out" >&2
	die "promtool check config failed for $CONFIG"
fi

# ---- already running? ----
if pid=$(pid_alive "$PIDFILE"); then
	if [[ $(cat "$RUN_DIR/config-path" 2>/dev/null) == "$CONFIG" ]] &&
		[[ $(http_code "$URL/-/ready") == 200 ]]; then
		kill -HUP "$pid"
		log "Prometheus already up on $URL (pid $pid); config reloaded"
		echo "$URL"
		exit 0
	fi
	log "restarting Prometheus on $URL (pid $pid) with $CONFIG"
	stop_pid "$pid" prometheus 30
	rm -f "$PIDFILE"
fi
if port_open "$PROM_PORT" && stop_package_prometheus; then
	sleep 1
fi
if port_open "$PROM_PORT"; then
	who=$(ss -ltnpH "sport = :$PROM_PORT" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 pid \2/p' | head -n1 || true)
	die "port $PROM_PORT is already in use${who:+ by $who} (not started by prom-up.sh)"
fi

# ---- start ----
if [[ -f $RUN_DIR/storage-path ]]; then
	rm -rf "$(cat "$RUN_DIR/storage-path")"
fi
STORAGE=$(mktemp -d "$RUN_DIR/tsdb.XXXXXX")
echo "$STORAGE" >"$RUN_DIR/storage-path"
echo "$CONFIG" >"$RUN_DIR/config-path"

read -r -a extra <<<"${PROM_ARGS:-}"
log "starting $(prometheus --version 2>&1 | head -n1) on $URL (config $CONFIG, log $LOGFILE)"
start=$(now_s)
(
	cd "$RUN_DIR"
	close_extra_fds
	exec setsid prometheus \
		--config.file="$CONFIG" \
		--web.listen-address="127.0.0.1:$PROM_PORT" \
		--storage.tsdb.path="$STORAGE" \
		--web.enable-lifecycle \
		"${extra[@]}" \
		</dev/null >"$LOGFILE" 2>&1
) &
echo $! >"$PIDFILE"

if ! wait_http "$URL/-/ready" "$PROM_START_TIMEOUT"; then
	log "---- $LOGFILE (tail) ----"
	tail -n 40 "$LOGFILE" >&2 || true
	if pid=$(pid_alive "$PIDFILE"); then
		stop_pid "$pid" prometheus 10
	fi
	rm -f "$PIDFILE"
	die "Prometheus did not become ready within ${PROM_START_TIMEOUT}s"
fi
log "Prometheus up in $(($(now_s) - start))s (pid $(cat "$PIDFILE"))"
echo "$URL"
