#!/usr/bin/env bash
# Run each Go fuzz target for a bounded time: scripts/fuzz.sh [pkg:FuzzName ...]
#
# Targets are "package:FuzzName" pairs (package relative to the repository root), from the
# arguments or else $FUZZ_TARGETS; add a target by appending a pair to FUZZ_TARGETS in the
# Makefile. Each runs for $FUZZTIME (default 30s); inputs that fail are written by Go to
# PACKAGE/testdata/fuzz/FuzzName/ and become regression seeds run by plain `go test`:
# commit them with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
# Minimizing a new input is not counted as fuzzing; keep it short so FUZZTIME is spent fuzzing.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	read -r -a targets <<<"${FUZZ_TARGETS:-}"
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no targets (pass pkg:FuzzName pairs or set FUZZ_TARGETS)" >&2
	exit 2
fi

failed=()
for t in "${targets[@]}"; do
	pkg=${t%%:*}
	name=${t#*:}
	if [ "$pkg" = "$t" ] || [ -z "$name" ]; then
		echo "fuzz.sh: $t: want package:FuzzName" >&2
		exit 2
	fi
	echo "== $name in ./$pkg for $FUZZTIME"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "./$pkg"; then
		failed+=("$t")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: failed: ${failed[*]} (inputs in each package's testdata/fuzz/)" >&2
	exit 1
fi
