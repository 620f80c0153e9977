#!/usr/bin/env bash
# Runs Molecule scenarios on the lab: makes sure the project's Docker engine runs and the lab
# images are current, runs `molecule test -s <scenario>` for every scenario given (default: every
# molecule/*/molecule.yml on the bookworm image, then the server matrix below), prints the time
# of each, and stops the engine at the end if this script started it, even on failure or
# interrupt.
#   scripts/run-molecule.sh [SCENARIO[@SUITE]...]
# SCENARIO@SUITE runs the scenario on the image of that Debian suite (lab/image.sh --suite SUITE,
# tag quantum-lab:SUITE, passed to molecule as QT_LAB_IMAGE): `incident@trixie` is the incident
# scenario on Redis 8.0.2. A plain SCENARIO runs on quantum-lab:latest (bookworm, Redis 7.0.15).
# Passes run one after the other, so a scenario's container name never collides with itself.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lab/common.sh
source lab/common.sh
export PATH="$PWD/.venv/bin:$PATH"

# The server matrix of a full run: these scenarios also run on these suites' images.
MATRIX_SCENARIOS=(incident healthy)
MATRIX_SUITES=(trixie)

scenarios=("$@")
if [[ ${#scenarios[@]} -eq 0 ]]; then
  for f in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "$f")")"); done
  for suite in "${MATRIX_SUITES[@]}"; do
    for s in "${MATRIX_SCENARIOS[@]}"; do
      [[ -f molecule/$s/molecule.yml ]] && scenarios+=("$s@$suite")
    done
  done
fi
[[ ${#scenarios[@]} -gt 0 ]] || die "no Molecule scenario found under molecule/"
suites=()
bookworm_wanted=false
for s in "${scenarios[@]}"; do
  [[ -f molecule/${s%%@*}/molecule.yml ]] || die "unknown scenario ${s%%@*} (no molecule/${s%%@*}/molecule.yml)"
  if [[ $s == *@* ]]; then
    [[ " ${suites[*]} " == *" ${s#*@} "* ]] || suites+=("${s#*@}")
  else
    bookworm_wanted=true
  fi
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
if $bookworm_wanted; then lab/image.sh || exit 1; fi
for suite in "${suites[@]}"; do
  env -u QT_LAB_IMAGE lab/image.sh --suite "$suite" || exit 1
done
log "engine and image ready in $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $setup_start}") s"

declare -A seconds result
failed=0
bookworm_image=$QT_LAB_IMAGE
for s in "${scenarios[@]}"; do
  name=${s%%@*}
  if [[ $s == *@* ]]; then image=quantum-lab:${s#*@}; else image=$bookworm_image; fi
  # .config/molecule/config.yml takes the platform's image from QT_LAB_IMAGE.
  export QT_LAB_IMAGE=$image
  read -r -a ports <<<"$(free_ports 6)"
  # Scenarios read QT_MOLECULE_REDIS_PORT (one host) or _1.._6 (several hosts, or a primary,
  # its replica and 3 sentinels).
  export QT_MOLECULE_REDIS_PORT=${ports[0]} QT_MOLECULE_REDIS_PORT_1=${ports[0]} \
    QT_MOLECULE_REDIS_PORT_2=${ports[1]} QT_MOLECULE_REDIS_PORT_3=${ports[2]} \
    QT_MOLECULE_REDIS_PORT_4=${ports[3]} QT_MOLECULE_REDIS_PORT_5=${ports[4]} \
    QT_MOLECULE_REDIS_PORT_6=${ports[5]}
  log "scenario $s on $image (Redis port ${ports[0]})"
  current=$name
  t0=$EPOCHREALTIME
  molecule test -s "$name"
  rc=$?
  current=""
  seconds[$s]=$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $t0}")
  if [[ $rc -eq 0 ]]; then result[$s]=passed; else result[$s]="FAILED (rc $rc)"; failed=1; fi
done

echo
echo "Molecule scenarios:"
for s in "${scenarios[@]}"; do
  printf '  %-18s %-16s %7s s\n' "$s" "${result[$s]}" "${seconds[$s]}"
done
exit $failed
