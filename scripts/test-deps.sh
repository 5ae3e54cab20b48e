#!/usr/bin/env bash
# Install what `make test` needs beyond Go and Java, or fail at once naming the
# missing piece and the command that installs it:
#   - prometheus and promtool (Debian's "prometheus" package; the dashboard tests)
#   - sigma-cli (PyPI; the coverage audit is compared with `sigma analyze attack`)
# Elasticsearch itself is fetched by es-up.sh. Idempotent and quiet when all is there.
set -euo pipefail

_log_prefix=test-deps
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd curl unzip python3

# ---- prometheus + promtool ----
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
	is_root || die "prometheus/promtool not found; install them with: sudo apt-get install prometheus"
	ensure_prometheus
fi

# ---- sigma-cli ----
if ! command -v sigma >/dev/null 2>&1; then
	pip_args=(--quiet --disable-pip-version-check)
	is_root || pip_args+=(--user)
	log "pip install sigma-cli"
	pip_log="$ENRICHER_CACHE/pip-sigma-cli.log"
	mkdir -p "$ENRICHER_CACHE"
	if ! python3 -m pip install "${pip_args[@]}" sigma-cli >"$pip_log" 2>&1; then
		tail -n 20 "$pip_log" >&2 || true
		die "installing sigma-cli failed (log: $pip_log); install it with: python3 -m pip install sigma-cli"
	fi
	hash -r
	if command -v pyenv >/dev/null 2>&1; then
		pyenv rehash || true
	fi
	command -v sigma >/dev/null 2>&1 ||
		die "sigma-cli installed but 'sigma' is not on PATH (add $(python3 -m site --user-base)/bin to PATH)"
	log "installed sigma-cli"
fi
