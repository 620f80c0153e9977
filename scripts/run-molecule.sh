#!/usr/bin/env bash
# Runs Molecule scenarios on the lab: makes sure the project's Docker engine runs and the lab
# image is current, runs `molecule test -s <scenario>` for every scenario given (default: every
# molecule/*/molecule.yml), prints the time of each, and stops the engine at the end if this
# script started it, even on failure or interrupt.
#   scripts/run-molecule.sh [SCENARIO...]
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lab/common.sh
source lab/common.sh
export PATH="$PWD/.venv/bin:$PATH"

scenarios=("$@")
if [[ ${#scenarios[@]} -eq 0 ]]; then
  for f in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "$f")")"); done
fi
[[ ${#scenarios[@]} -gt 0 ]] || die "no Molecule scenario found under molecule/"
for s in "${scenarios[@]}"; do
  [[ -f molecule/$s/molecule.yml ]] || die "unknown scenario $s (no molecule/$s/molecule.yml)"
done

started_engine=false
current=""
cleanup() {
  # An interrupted scenario still has its containers: molecule's own destroy removes them.
  if [[ -n $current ]]; then
    log "destroying the containers of interrupted scenario $current"
    molecule destroy -s "$current" >/dev/null 2>&1 || true
  fi
  if $started_engine; then
    lab/engine.sh stop || log "engine left running (see above)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
  # Host network: each scenario's Redis needs ports nobody listens on (other tests, the lab).
  # The search starts at a random port of the range: two runs started together (another
  # engineer's) would otherwise both take the lowest free port before either Redis listens.
  local want=$1 offset=$((RANDOM % 109)) i port found=()
  for ((i = 0; i < 109 && ${#found[@]} < want; i++)); do
    port=$((6391 + (offset + i) % 109))
    ss -Hltn "sport = :$port" | grep -q . || found+=("$port")
  done
  [[ ${#found[@]} -eq $want ]] || die "no $want free ports between 6391 and 6499"
  echo "${found[@]}"
}

setup_start=$EPOCHREALTIME
if ! timeout 5 docker version >/dev/null 2>&1; then
  started_engine=true
fi
lab/engine.sh start || exit 1
lab/image.sh || exit 1
log "engine and image ready in $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $setup_start}") s"

declare -A seconds result
failed=0
for s in "${scenarios[@]}"; do
  read -r -a ports <<<"$(free_ports 4)"
  # Scenarios read QT_MOLECULE_REDIS_PORT (one host) or _1.._4 (several hosts).
  export QT_MOLECULE_REDIS_PORT=${ports[0]} QT_MOLECULE_REDIS_PORT_1=${ports[0]} \
    QT_MOLECULE_REDIS_PORT_2=${ports[1]} QT_MOLECULE_REDIS_PORT_3=${ports[2]} \
    QT_MOLECULE_REDIS_PORT_4=${ports[3]}
  log "scenario $s (Redis port ${ports[0]})"
  current=$s
  t0=$EPOCHREALTIME
  molecule test -s "$s"
  rc=$?
  current=""
  seconds[$s]=$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $t0}")
  if [[ $rc -eq 0 ]]; then result[$s]=passed; else result[$s]="FAILED (rc $rc)"; failed=1; fi
done

echo
echo "Molecule scenarios:"
for s in "${scenarios[@]}"; do
  printf '  %-14s %-16s %7s s\n' "$s" "${result[$s]}" "${seconds[$s]}"
done
exit $failed
