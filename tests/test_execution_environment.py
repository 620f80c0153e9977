"""execution-environment.yml: `ansible-builder create` (the real one, pinned in requirements.txt)
writes the build context into a temporary directory, no container engine involved; the context
holds the Containerfile and copies of the files the definition names, and the image's pins are
the ones the project is tested with (requirements.txt)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

DEFINITION = PROJECT_ROOT / "execution-environment.yml"


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a pip requirements file, by name."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line.split("#", 1)[0].strip())
        if match:
            found[match[1].lower()] = match[2]
    return found


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("ee") / "context"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-builder"),
            "create",
            "--file", str(DEFINITION),
            "--context", str(where),
            "--output-filename", "Containerfile",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return where


def test_the_definition_is_builder_v3_with_a_local_base_image():
    definition = yaml.safe_load(DEFINITION.read_text())
    assert definition["version"] == 3
    name = definition["images"]["base_image"]["name"]
    # No registry host: the first part of the name is no host name (a dot, a port, localhost).
    first = name.split("/", 1)[0]
    assert "/" in name and "." not in first and ":" not in first and first != "localhost", name


def test_the_context_holds_the_containerfile_and_copies_of_the_dependencies(context):
    containerfile = (context / "Containerfile").read_text()
    definition = yaml.safe_load(DEFINITION.read_text())
    assert f'ARG EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    build = context / "_build"
    dependencies = definition["dependencies"]
    copies = {"python": "requirements.txt", "galaxy": "requirements.yml", "system": "bindep.txt"}
    for kind, copy in copies.items():
        assert (build / copy).read_text() == (PROJECT_ROOT / dependencies[kind]).read_text(), kind
        assert f"COPY _build/{copy}" in containerfile or kind == "galaxy", kind
    # The collections are installed from the copy of collections/requirements.yml.
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in (
        containerfile
    )
    assert (build / "scripts" / "assemble").is_file()


def test_the_image_pins_are_the_tested_ones(context):
    tested = pins(PROJECT_ROOT / "requirements.txt")
    containerfile = (context / "Containerfile").read_text()
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile)
    assert refs, containerfile
    installed = dict(ref.split("==", 1) for ref in refs[1].split())
    assert installed == {"ansible-core": tested["ansible-core"], "ansible-runner": tested["ansible-runner"]}
    image_python = pins(context / "_build" / "requirements.txt")
    assert image_python, "the image's requirements file pins nothing"
    assert {name: tested.get(name) for name in image_python} == image_python


def test_the_image_has_every_collection_a_playbook_calls():
    """Every FQCN outside ansible.builtin and the project's own collection (which comes with
    the project) is declared in collections/requirements.yml, which the image installs."""
    requirements = yaml.safe_load((PROJECT_ROOT / "collections/requirements.yml").read_text())
    declared = {collection["name"] for collection in requirements["collections"]}
    used = set()
    files = [
        PROJECT_ROOT / "recover.yml",
        *PROJECT_ROOT.glob("playbooks/**/*.yml"),
        *PROJECT_ROOT.glob("roles/**/*.yml"),
    ]
    for path in files:
        for match in re.finditer(r"^\s*-?\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:", path.read_text(), re.M):
            used.add(match[1])
    assert used - {"ansible.builtin", "quantum.redis_streams"} <= declared, used
