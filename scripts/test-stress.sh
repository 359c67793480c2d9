#!/usr/bin/env bash
# npm run test:stress [-- vitest args]: the test suite while both cores are kept busy, so a test that
# only passes on a quiet machine fails here instead of in CI. The burners are plain busy loops at the
# same priority as the tests (nice 0), one per core by default, each bounded in time, and ended by
# their own pids when the run ends however it ends.
#
#   STRESS_BURNERS        busy loops to run (default: the number of cores)
#   STRESS_MAX_SECONDS    each burner stops by itself after this long (default 5400, CI's limit)
set -euo pipefail
cd "$(dirname "$0")/.."
burners="${STRESS_BURNERS:-$(nproc)}"
max="${STRESS_MAX_SECONDS:-5400}"
pids=()
stop_burners() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_burners EXIT
for _ in $(seq 1 "$burners"); do
  nice -n 0 bash -c 'end=$((SECONDS + $1)); while [ "$SECONDS" -lt "$end" ]; do :; done' burner "$max" &
  pids+=("$!")
done
echo "test:stress: ${burners} CPU burner(s) at nice 0 (pids ${pids[*]}), at most ${max} s each, on $(nproc) cores" >&2
start=$(date +%s)
rc=0
npx vitest run "$@" || rc=$?
echo "test:stress: the suite ended with exit ${rc} after $(( $(date +%s) - start )) s under load" >&2
exit "$rc"
