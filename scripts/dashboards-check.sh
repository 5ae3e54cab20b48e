#!/usr/bin/env bash
# Check dashboards/ against real servers: Kibana saved objects against a real
# Elasticsearch mapping and data, Grafana and alert-rule PromQL against a real Prometheus
# scraping a real daemon, promtool check/test rules and check metrics.
#
#   dashboards-check.sh [go test flags...]     e.g. -v, -run TestKibana
#
# Needs Elasticsearch at ELASTICSEARCH_URL (default http://127.0.0.1:9200; scripts/es-up.sh)
# and prometheus/promtool (scripts/prom-up.sh installs Debian's package as root).
# The test starts and stops its own daemon and Prometheus on free ports.
set -euo pipefail

_log_prefix=dashboards-check
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
need_cmd go curl
export ELASTICSEARCH_URL=${ELASTICSEARCH_URL:-http://127.0.0.1:9200}
[[ $(http_code "$ELASTICSEARCH_URL/_cluster/health") == 200 ]] ||
	die "no Elasticsearch at $ELASTICSEARCH_URL: run scripts/es-up.sh (make es-up) first"
# The OpenSearch Dashboards objects are checked against OpenSearch (make test does it).
exec go test -tags integration -count=1 -skip TestOpenSearchDashboards "$@" ./dashboards/
