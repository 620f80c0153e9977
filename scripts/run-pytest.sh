#!/usr/bin/env bash
# Runs the pytest suite in .venv. pytest exits 5 when it collects no test: that is a broken
# suite here, never a pass, so it is turned into a failure with a sentence saying so.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: the suite is missing or its selection is wrong." >&2
  exit 1
fi
exit $rc
