#!/usr/bin/env bash
# Runs the pytest suite in .venv on the server matrix (docs/server-versions.md):
#   1. Debian 12's redis-server 7.0.15 (on PATH): the full suite;
#   2. Redis 8.0.2 and 3. Valkey 8.1.1, Debian 13's, built once by scripts/redis-servers.sh:
#      the tests marked `server` (every test that starts or talks to a redis-server, marked by
#      tests/conftest.py); the others do not depend on the server and ran in pass 1.
#   scripts/run-pytest.sh [PYTEST ARGS...]   (the arguments are given to every pass)
#   QT_SERVER_MATRIX=7.0   only the first pass;  QT_SERVER_MATRIX=full   the full suite on all three.
# Every pass runs; each is timed; the script fails when any pass failed and names its server.
# pytest exits 5 when it collects no test: that is a broken suite here, never a pass, so it is
# turned into a failure with a sentence saying so.
set -uo pipefail
cd "$(dirname "$0")/.."

matrix=${QT_SERVER_MATRIX:-matrix}
case $matrix in
  7.0 | matrix | full) ;;
  *) echo "QT_SERVER_MATRIX must be 7.0, matrix or full, not '$matrix'." >&2; exit 2 ;;
esac

failed=()
summary=()

run_pass() {
  # run_pass LABEL SERVER_BINARY|"" [PYTEST ARGS...]
  local label=$1 binary=$2 start rc secs
  shift 2
  echo "== pytest on $label${binary:+ ($binary)}: $*" >&2
  start=$EPOCHREALTIME
  if [[ -n $binary ]]; then
    QT_REDIS_SERVER=$binary .venv/bin/pytest "$@"
  else
    env -u QT_REDIS_SERVER .venv/bin/pytest "$@"
  fi
  rc=$?
  secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", b - a}')
  if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests on $label: the suite is missing or its selection is wrong." >&2
    rc=1
  fi
  if [[ $rc -eq 0 ]]; then
    summary+=("$label: passed in ${secs} s")
  else
    summary+=("$label: FAILED (pytest rc $rc) in ${secs} s")
    failed+=("$label")
  fi
}

run_pass "Redis 7.0 (Debian 12)" "" "$@"

if [[ $matrix != 7.0 ]]; then
  selection=(-m server)
  [[ $matrix == full ]] && selection=()
  if bin=$(scripts/redis-servers.sh); then
    run_pass "Redis 8.0 (Debian 13)" "$bin/redis-server-8.0" "${selection[@]}" "$@"
    run_pass "Valkey 8.1 (Debian 13)" "$bin/valkey-server-8.1" "${selection[@]}" "$@"
  else
    summary+=("Redis 8.0 and Valkey 8.1 (Debian 13): NOT RUN, scripts/redis-servers.sh could not build them")
    failed+=("Redis 8.0 and Valkey 8.1 (scripts/redis-servers.sh failed)")
  fi
fi

echo "== pytest server matrix:" >&2
printf '   %s\n' "${summary[@]}" >&2
if ((${#failed[@]})); then
  failures=$(printf '%s; ' "${failed[@]}")
  echo "pytest failed on: ${failures%; }." >&2
  exit 1
fi
