#!/usr/bin/env bash
# `ansible-test sanity` on the quantum.redis_streams collection, with no container: ansible-test
# runs each sanity test in its own virtual environment under .cache/sanity (HOME), whose pip
# comes from scripts/get_pip_bootstrap.py (ansible-test's own bootstrap download is not
# reachable from these machines). The first run installs the test requirements (a few
# minutes); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=$root/.cache/sanity
venv=$cache/venv
ansible_core=$(grep -E '^ansible-core==' requirements.txt)
if [[ ! -x $venv/bin/ansible-test ]] || ! "$venv/bin/pip" show -q "${ansible_core%%==*}" 2>/dev/null \
  || [[ $("$venv/bin/python" -c 'import ansible; print(ansible.__version__)') != "${ansible_core#*==}" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$ansible_core" \
    2> >(grep -v "is ignored: it is neither" >&2)
fi
pip_version=$("$venv/bin/python" - <<'PY'
import re, pathlib, ansible_test
text = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PY
)
mkdir -p "$cache/home/.ansible/test/cache" "$cache/home/.config/pip"
# ansible-test runs pip with an environment of its own (PATH, HOME): the index, certificate and
# constraint settings this machine's pip has (configuration files and PIP_* variables) are
# written to the pip configuration of that HOME, so its installs see the same packages.
"$venv/bin/pip" config list 2>/dev/null | "$venv/bin/python" -c '
import ast, sys
seen = {}
for line in sys.stdin:
    key, _, value = line.rstrip("\n").partition("=")
    seen.setdefault(key.split(".", 1)[1], ast.literal_eval(value))
print("[global]")
for key, value in seen.items():
    print(key, "=", value)
' > "$cache/home/.config/pip/pip.conf"
cp scripts/get_pip_bootstrap.py "$cache/home/.ansible/test/cache/get_pip_${pip_version//./_}.py"
collection=collections/ansible_collections/quantum/redis_streams
cd "$collection"
# ansible-test writes its results under the collection's tests/output: cleared after the run.
trap 'rm -rf "$root/$collection/tests/output"; rmdir "$root/$collection/tests" 2>/dev/null || true' EXIT
HOME=$cache/home "$venv/bin/ansible-test" sanity --requirements --python 3.11 "$@"
