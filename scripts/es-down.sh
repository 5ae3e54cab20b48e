#!/usr/bin/env bash
# Stop the Elasticsearch started by es-up.sh on $ES_PORT (default 9200).
#   es-down.sh          SIGTERM via the pid file, SIGKILL after ES_STOP_TIMEOUT (30s)
#   es-down.sh --wipe   also delete its data dir (fresh cluster next time)
# Exits 0 when nothing is running.
set -euo pipefail

_log_prefix=es-down
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

down_args "$@"
down_server Elasticsearch "$ES_PORT" "$(es_run_dir)" "$(es_run_dir)/es.pid" "${ES_STOP_TIMEOUT:-30}"
