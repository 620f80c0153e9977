#!/usr/bin/env bash
# Creates .venv from requirements.txt and puts the collections Molecule's docker driver, the
# lab inventory and playbooks/awx.yml need into it, taken from the `ansible` wheel on PyPI
# because Galaxy is not reachable from these machines. Re-runs are cheap: a stamp of the inputs' hash is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

ANSIBLE_BUNDLE_VERSION=12.3.0
COLLECTIONS=(community/docker community/library_inventory_filtering_v1 ansible/posix awx/awx)
venv=.venv
stamp="$venv/.bootstrap-stamp"
want=$(cat requirements.txt "$0" | sha256sum | cut -c1-16)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
"$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$wheel_dir" "ansible==$ANSIBLE_BUNDLE_VERSION" 2> >(grep -v "is ignored: it is neither" >&2)
members=()
for c in "${COLLECTIONS[@]}"; do members+=("ansible_collections/$c/*"); done
"$venv/bin/python" - "$wheel_dir"/ansible-*.whl "$site" "${members[@]}" <<'PY'
import fnmatch, sys, zipfile
wheel, dest, *patterns = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not names:
        sys.exit(f"no collection found in {wheel}")
    zf.extractall(dest, names)
PY
echo "$want" > "$stamp"
