#!/usr/bin/env bash
# The main job, end to end on this machine: bring the lab up, reproduce the incident, show
# the stuck state, heal it with recover.yml, then print where the report is and its summary.
# The lab stays up so you can look around; `make lab-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# Short windows keep the demo quick; production runs use the roles' defaults (60 s).
EVIDENCE_WINDOW_S=${EVIDENCE_WINDOW_S:-10}
VERIFY_WINDOW_S=${VERIFY_WINDOW_S:-15}
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Lab: engine, image, container (reused when already built)"
lab/lab.sh up

step "Injecting the incident: router hung with entries pending, an orphan consumer, a poisoned governor"
lab/lab.sh fault incident
sleep 3
lab/lab.sh fault status

step "Healing: ansible-playbook -i inventory/lab recover.yml"
ansible-playbook -i inventory/lab recover.yml \
  -e evidence_window_s="$EVIDENCE_WINDOW_S" -e stream_verify_window_s="$VERIFY_WINDOW_S"

step "After"
lab/lab.sh fault status

report=$(find evidence -name REPORT.md -newermt "@$started" 2>/dev/null | sort | tail -n 1)
step "Report: ${report:-not found}"
[[ -n "$report" ]] && cat "$report"
printf '\nDemo took %ss. The lab is still up: `make lab-down` removes it.\n' "$(( $(date +%s) - started ))"
