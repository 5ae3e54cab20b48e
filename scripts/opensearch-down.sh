#!/usr/bin/env bash
# Stop the OpenSearch started by opensearch-up.sh on $OS_PORT (default 9201).
#   opensearch-down.sh          SIGTERM via the pid file, SIGKILL after OS_STOP_TIMEOUT (30s)
#   opensearch-down.sh --wipe   also delete its data dir (fresh cluster next time)
# Exits 0 when nothing is running.
set -euo pipefail

_log_prefix=opensearch-down
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

down_args "$@"
down_server OpenSearch "$OS_PORT" "$(os_run_dir)" "$(os_run_dir)/opensearch.pid" "${OS_STOP_TIMEOUT:-30}"
