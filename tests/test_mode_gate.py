"""The mode gate: the mode file is read exactly as systemd reads an `EnvironmentFile=`, and only
a value systemd would give the unit as exactly `true`, uncontradicted, is TESTNET.

The collection's `module_utils/mode_gate.py` (which pipeline_snapshot runs on the target) ports
systemd 252 (Debian 12 ships 252.38):
parse_env_file_internal() and load_env_file() in src/basic/env-file.c, read_full_file() in
src/basic/fileio.c, strv_env_clean_with_callback() and env_assignment_is_valid() in
src/basic/env-util.c, applied as exec_context_load_environment() in src/core/execute.c does.
`test_load_env_file_*` mirror systemd's own cases (src/test/test-env-file.c, and
test_parse_env_file / test_parse_multiline_env_file), with the results systemd 252 gives: in
252 a comment line ending in a backslash swallows the next line (later versions changed that),
so env_file_3 loads nothing. When this machine has systemd 252's libsystemd-shared,
`test_agrees_with_the_real_systemd` runs the real load_env_file() + strv_env_clean() (in a
child process) on every file of this module and on random ones and compares.
"""

from __future__ import annotations

import glob
import json
import random
import subprocess
import sys

import pytest
from conftest import collection_util

gate_module = collection_util("mode_gate")
mode_gate = gate_module.mode_gate
load_env_file = gate_module.load_env_file

VAR = "BINANCE_TESTNET"
SOURCE = "/etc/quantum/testnet.env"

TESTNET_FILES = [
    "BINANCE_TESTNET=true\n",
    "BINANCE_TESTNET=true",
    'BINANCE_TESTNET="true"\n',
    "BINANCE_TESTNET='true'\n",
    "BINANCE_TESTNET= 'true'  \n",
    "  BINANCE_TESTNET = true   \n",
    "\tBINANCE_TESTNET\t=\ttrue\t\n",
    "# BINANCE_TESTNET=false\n; BINANCE_TESTNET=false\n  # indented comment\nOTHER=1\nBINANCE_TESTNET=true\n",
    "BINANCE_TESTNET=true\r\n",
    "API_KEY=abc\r\nBINANCE_TESTNET=true\r\n",
    "BINANCE_TESTNET=tr\\\nue\n",
    'BINANCE_TESTNET="tr"ue\n',
    "BINANCE_TESTNET=\\true\n",
    "BINANCE_TESTNET=true\\",
    "BINANCE_TESTNET=true\nBINANCE_TESTNET=true\n",
    "# a comment that ends in a backslash \\\n\nBINANCE_TESTNET=true\n",
    "OTHER VAR=1\nBINANCE_TESTNET=true\n",
]


@pytest.mark.parametrize("content", TESTNET_FILES)
def test_testnet_only_for_what_systemd_reads_as_true(content: str) -> None:
    gate = mode_gate(content, VAR, SOURCE)
    assert gate["mode"] == "TESTNET", gate
    assert gate["changes_allowed"] is True
    assert SOURCE in gate["reason"]
    assert load_env_file(content).environment[VAR] == "true"


LIVE_FILES = [
    "BINANCE_TESTNET=false\n",
    "BINANCE_TESTNET='false'\n",
    "BINANCE_TESTNET=false\nBINANCE_TESTNET=false",
]


@pytest.mark.parametrize("content", LIVE_FILES)
def test_live_for_false(content: str) -> None:
    gate = mode_gate(content, VAR, SOURCE)
    assert gate["mode"] == "LIVE"
    assert gate["changes_allowed"] is False
    assert "false" in gate["reason"]


UNKNOWN_FILES = [
    # systemd has no `export`: the name would be `export BINANCE_TESTNET`, invalid, so ignored.
    ("export BINANCE_TESTNET=true\n", "`export BINANCE_TESTNET=true` on line 1 of /etc/quantum/testnet.env"),
    ("export BINANCE_TESTNET='false'\n", "is not an assignment systemd reads"),
    ("BINANCE_TESTNET=true\nexport BINANCE_TESTNET=false\n", "on line 2 of"),
    # A `#` after a value is part of the value.
    ("BINANCE_TESTNET=true # note\n", "BINANCE_TESTNET='true # note' on line 1"),
    ("BINANCE_TESTNET=true #note\n", "put comments on their own line"),
    ("BINANCE_TESTNET='true'  # set by ops\n", "'true# set by ops'"),
    ("BINANCE_TESTNET=true ; note\n", "'true ; note'"),
    # Quotes count only where a value starts.
    ('BINANCE_TESTNET=tru"e"\n', "'tru\"e\"'"),
    ("BINANCE_TESTNET='true' false\n", "'truefalse'"),
    # An unclosed quote runs to the end of the file.
    ('BINANCE_TESTNET="true\n', "neither true nor false"),
    # A trailing backslash continues the line: the value takes in the next one.
    ("BINANCE_TESTNET=true\\\nOTHER=1\n", "runs on to line 2"),
    # ... but not across a CRLF: the CR ends the line and the value is `tr`.
    ("BINANCE_TESTNET=tr\\\r\nue\r\n", "BINANCE_TESTNET='tr' on line 1"),
    # A comment that ends in a backslash swallows the next line (systemd 252).
    ("# note \\\nBINANCE_TESTNET=true\n", "part of the comment that starts on line 1"),
    ('OTHER="x\nBINANCE_TESTNET=true\n"\n', "part of the value assigned on line 1"),
    (None, "missing or unreadable"),
    ("", "does not assign BINANCE_TESTNET"),
    ("\n\n# only comments\n", "does not assign"),
    ("# BINANCE_TESTNET=true\n", "does not assign"),
    ("; BINANCE_TESTNET=true\n", "does not assign"),
    ("BINANCE_TESTNET_OLD=true\n", "does not assign"),
    ("BINANCE_TESTNET\n", "does not assign"),
    ("BINANCE-TESTNET=true\n", "does not assign"),
    ("BINANCE_TESTNET=True\n", "neither true nor false"),
    ("BINANCE_TESTNET=1\n", "neither true nor false"),
    ("BINANCE_TESTNET=yes\n", "neither true nor false"),
    ("BINANCE_TESTNET=\n", "BINANCE_TESTNET='' on line 1"),
    ('BINANCE_TESTNET=""\n', "neither true nor false"),
    ("BINANCE_TESTNET=$TESTNET\n", "'$TESTNET'"),
    # Duplicates: systemd lets the last win; the gate wants every assignment to agree.
    ("BINANCE_TESTNET=true\nBINANCE_TESTNET=false\n", "contradicting"),
    ("BINANCE_TESTNET=false\nBINANCE_TESTNET=true\n", "contradicting"),
    ("BINANCE_TESTNET=true\nBINANCE_TESTNET=\n", "neither true nor false"),
    # Files systemd refuses as a whole (the unit does not start).
    ("BINANCE_TESTNET=true\n\0", "systemd would refuse to load the mode file: it holds a NUL byte"),
    ("BINANCE_TESTNET=true\nOTHER=\udcff\n", "line 2 is not valid UTF-8"),
    ("BINANCE_TESTNET=true\nfo\ufffeo=bar\n", "not valid UTF-8"),
]


@pytest.mark.parametrize(("content", "words"), UNKNOWN_FILES)
def test_anything_else_is_unknown_with_a_reason(content: str | None, words: str) -> None:
    gate = mode_gate(content, VAR, SOURCE if content and "NUL" not in words else "the mode file")
    assert gate["mode"] == "UNKNOWN", gate
    assert gate["changes_allowed"] is False
    assert words in gate["reason"], gate["reason"]
    assert "\n" not in gate["reason"]


@pytest.mark.parametrize(
    "content",
    [
        "API_SECRET=hunter2\nBINANCE_TESTNET=maybe\n",
        "API_SECRET=hunter2\nexport BINANCE_TESTNET=true\n",
        "BINANCE_TESTNET=true\\\nAPI_SECRET=hunter2\n",
        "export BINANCE_TESTNET=true\\\nAPI_SECRET=hunter2\n",
        'BINANCE_TESTNET="true\nAPI_SECRET=hunter2\n',
        'API_SECRET="hunter2\nBINANCE_TESTNET=true\n"\n',
        "# note \\\nBINANCE_TESTNET=true # hunter2\n",
        "API_SECRET=hunter2\udcff\nBINANCE_TESTNET=true\n",
        "API_SECRET=hunter2\nBINANCE_TESTNET=true\nBINANCE_TESTNET=false\n",
        "API_SECRET=hunter2\n",
        "BINANCE_TESTNET=true\nAPI_SECRET=hunter2\n",
    ],
)
def test_other_values_never_leave_the_gate(content: str) -> None:
    gate = mode_gate(content, VAR, SOURCE)
    assert "hunter2" not in gate["reason"]
    assert "hunter2" not in json.dumps(gate["assignments"])


def test_unreadable_says_why() -> None:
    gate = mode_gate(None, VAR, SOURCE, "file not found: /etc/quantum/testnet.env.")
    assert gate["reason"] == (
        "/etc/quantum/testnet.env is missing or unreadable (file not found: /etc/quantum/testnet.env)"
    )


def test_contradiction_names_the_lines() -> None:
    gate = mode_gate("A=1\nBINANCE_TESTNET=true\n\nBINANCE_TESTNET=false\n", VAR)
    assert "line 2: 'true'" in gate["reason"] and "line 4: 'false'" in gate["reason"]
    assert gate["assignments"] == [{"line": 2, "value": "true"}, {"line": 4, "value": "false"}]


def test_assignments_are_the_lines_systemd_reads() -> None:
    content = (
        "# header \\\nswallowed\r\n\r\nBINANCE_TESTNET=tr\\\nue\nOTHER='a\nb'\n  BINANCE_TESTNET = \"true\"\n"
    )
    gate = mode_gate(content, VAR, SOURCE)
    assert gate["mode"] == "TESTNET"
    assert gate["assignments"] == [{"line": 4, "value": "true"}, {"line": 8, "value": "true"}]
    assert gate["reason"] == "BINANCE_TESTNET=true in /etc/quantum/testnet.env (line 4, 8)"


def test_variable_is_data() -> None:
    assert mode_gate("SANDBOX=true\n", "SANDBOX")["mode"] == "TESTNET"
    assert mode_gate("SANDBOX=true\n", VAR)["mode"] == "UNKNOWN"
    assert "not a name systemd accepts" in mode_gate("export SANDBOX=true\n", "export SANDBOX")["reason"]


# systemd's own env-file cases (src/test/test-env-file.c), as systemd 252 loads them.
SYSTEMD_CASES = [
    (
        "a=a\na=b\na=b\na=a\nb=b\\\nc\nd= d\\\ne  \\\nf  \ng=g\\ \nh= ąęół\\ śćńźżμ \ni=i\\",
        {"a": "a", "b": "bc", "d": "de  f", "g": "g ", "h": "ąęół śćńźżμ", "i": "i"},
    ),
    ("a=a\\\n", {"a": "a"}),
    (
        '#SPAMD_ARGS="-d --socketpath=/var/lib/bulwark/spamd \\\n'
        "#--nouser-config                                     \\\n"
        "normal1=line\\\n111\n"
        ";normal=ignored                                      \\\n"
        "normal2=line222\n"
        "normal ignored                                       \\\n",
        {},
    ),
    (
        '# Generated\n\nHWMON_MODULES="coretemp f71882fg"\n\n# For compatibility reasons\n\n'
        "MODULE_0=coretemp\nMODULE_1=f71882fg",
        {"HWMON_MODULES": "coretemp f71882fg", "MODULE_0": "coretemp", "MODULE_1": "f71882fg"},
    ),
    ("a=\nb=", {"a": "", "b": ""}),
    (
        "a=\\ \\n \\t \\x \\y \\' \nb= \\$'                  \n"
        "c= ' \\n\\t\\$\\`\\\\\n'   \nd= \" \\n\\t\\$\\`\\\\\n\"   \n",
        {"a": " n t x y '", "b": "$'", "c": " \\n\\t\\$\\`\\\\\n", "d": " \\n\\t$`\\\n"},
    ),
    (
        "one=BAR   \n# comment\n # comment \n ; comment \n  two   =   bar    \ninvalid line\n"
        'invalid line #comment\nthree = "333\nxxxx"\nfour = \'44\\"44\'\n'
        'five = "55\\"55" "FIVE" cinco   \nsix = seis sechs\\\n sis\nseven="sevenval" #nocomment\n'
        "eight=eightval #nocomment\nexport nine=nineval\nten=ignored\nten=ignored\nten=\n"
        "eleven=\\value\ntwelve=\"\\value\"\nthirteen='\\value'",
        {
            "one": "BAR",
            "two": "bar",
            "three": "333\nxxxx",
            "four": '44\\"44',
            "five": '55"55FIVEcinco',
            "six": "seis sechs sis",
            "seven": "sevenval#nocomment",
            "eight": "eightval #nocomment",
            "ten": "",
            "eleven": "value",
            "twelve": "\\value",
            "thirteen": "\\value",
        },
    ),
    (
        'one=BAR\\\n\\ \\ \\ \\ VAR\\\n\\\tGAR\n#comment\ntwo="bar\\\n    var\\\n\tgar"\n'
        '#comment\ntri="bar \\\n    var \\\n\tgar "\n',
        {"one": "BAR    VAR\tGAR", "two": "bar    var\tgar", "tri": "bar     var \tgar "},
    ),
]


@pytest.mark.parametrize(("content", "environment"), SYSTEMD_CASES)
def test_load_env_file_as_systemd_does(content: str, environment: dict[str, str]) -> None:
    loaded = load_env_file(content)
    assert loaded.error is None
    assert loaded.environment == environment


@pytest.mark.parametrize("content", ["fo\ufffeo=bar", "foo=b\uffffar", "baz=hello world\ufffe", "a=\udcc3("])
def test_load_env_file_refuses_invalid_utf8(content: str) -> None:
    loaded = load_env_file(content)
    assert loaded.error == "line 1 is not valid UTF-8"
    assert loaded.environment == {}


_ORACLE = r"""
import ctypes, json, os, sys, tempfile
lib = ctypes.CDLL(sys.argv[1])
PP = ctypes.POINTER(ctypes.c_char_p)
lib.load_env_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(PP)]
lib.strv_env_clean_with_callback.argtypes = [PP, ctypes.c_void_p, ctypes.c_void_p]
lib.strv_env_clean_with_callback.restype = PP
lib.strv_free.argtypes = [PP]
results = []
for data in json.load(sys.stdin):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(bytes.fromhex(data))
    out = PP()
    if lib.load_env_file(None, f.name.encode(), ctypes.byref(out)) < 0:
        results.append(None)
    else:
        env, out = {}, lib.strv_env_clean_with_callback(out, None, None)
        i = 0
        while out and out[i] is not None:
            key, _, value = out[i].partition(b"=")
            env[key.decode()] = value.decode()
            i += 1
        lib.strv_free(out)
        results.append(env)
    os.unlink(f.name)
json.dump(results, sys.stdout)
"""

_LIBSYSTEMD_SHARED_252 = sorted(glob.glob("/usr/lib/*/systemd/libsystemd-shared-252.so"))


def _random_files(count: int) -> list[bytes]:
    pieces = [b"A", b"B", b"_", b"=", b"=", b" ", b"\t", b"\n", b"\n", b"\r", b"\r\n", b"#", b";", b"'"]
    pieces += [b'"', b"\\", b"\\", b"$", b"`", b"x", b"1", b"true", b"export ", b"\xc3\xa9", b"\x01"]
    pieces += [b"\xff", b"\x00"]  # rarer: each makes systemd refuse the whole file
    weights = [1.0] * (len(pieces) - 2) + [0.1, 0.05]
    rng = random.Random(252)
    return [b"".join(rng.choices(pieces, weights, k=rng.randint(0, 40))) for _ in range(count)]


@pytest.mark.skipif(not _LIBSYSTEMD_SHARED_252, reason="no systemd 252 libsystemd-shared here")
def test_agrees_with_the_real_systemd() -> None:
    files = [
        content.encode("utf-8", "surrogateescape")
        for content in [*TESTNET_FILES, *LIVE_FILES, *(c for c, _ in UNKNOWN_FILES if c is not None)]
        + [c for c, _ in SYSTEMD_CASES]
    ]
    # Non-characters, an encoded surrogate, an overlong encoding: not valid UTF-8 for systemd.
    files += [b"fo\xef\xbf\xbeo=bar", b"A=\xed\xa0\x80", b"A=\xc0\xaf", b"A=\xef\xb7\x90"]
    files += _random_files(3000)
    answer = subprocess.run(
        [sys.executable, "-c", _ORACLE, _LIBSYSTEMD_SHARED_252[0]],
        input=json.dumps([data.hex() for data in files]),
        capture_output=True,
        text=True,
        check=True,
    )
    for data, systemd in zip(files, json.loads(answer.stdout), strict=True):
        loaded = load_env_file(data.decode("utf-8", "surrogateescape"))
        ours = None if loaded.error else loaded.environment
        assert ours == systemd, data


# read_mode_gate: the file read on the target (by pipeline_snapshot), whole, as systemd reads it.


def test_read_mode_gate_reads_the_bytes_systemd_reads(tmp_path) -> None:
    path = tmp_path / "testnet.env"
    path.write_bytes(b"API_KEY=\xc3\xa9t\xc3\xa9\r\nBINANCE_TESTNET=true\r\n")
    assert gate_module.read_mode_gate(str(path), VAR) == mode_gate(
        "API_KEY=\u00e9t\u00e9\r\nBINANCE_TESTNET=true\r\n", VAR, str(path)
    )
    path.write_bytes(b"API_KEY=\xff\nBINANCE_TESTNET=true\n")
    gate = gate_module.read_mode_gate(str(path), VAR)
    assert gate["reason"] == f"systemd would refuse to load {path}: line 1 is not valid UTF-8"


def test_read_mode_gate_says_why_a_file_cannot_be_read(tmp_path) -> None:
    missing = tmp_path / "absent.env"
    assert gate_module.read_mode_gate(str(missing), VAR) == {
        "mode": "UNKNOWN",
        "reason": f"{missing} is missing or unreadable (File not found: {missing})",
        "changes_allowed": False,
        "assignments": [],
    }
    below_a_file = tmp_path / "file"
    below_a_file.write_text("x")
    reason = gate_module.read_mode_gate(str(below_a_file / "testnet.env"), VAR)["reason"]
    assert reason == (
        f"{below_a_file}/testnet.env is missing or unreadable "
        f"(Unable to read file: {below_a_file}/testnet.env (Not a directory))"
    )


def test_read_mode_gate_never_quotes_the_file_in_a_failure(tmp_path, monkeypatch) -> None:
    """A failure of the gate itself is UNKNOWN, named by the exception's type: its message
    (which could quote the file) is not shown."""

    def fails(content, *args):
        raise ValueError(f"cannot parse {content!r}")

    path = tmp_path / "testnet.env"
    path.write_text("API_SECRET=hunter2\nBINANCE_TESTNET=true\n")
    monkeypatch.setattr(gate_module, "mode_gate", fails)
    gate = gate_module.read_mode_gate(str(path), VAR)
    assert gate == {
        "mode": "UNKNOWN",
        "reason": f"the mode gate failed on {path} (ValueError; the file's content is not shown)",
        "changes_allowed": False,
        "assignments": [],
    }
