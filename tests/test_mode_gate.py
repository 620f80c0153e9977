"""The mode gate: only an explicit, unambiguous `true` is TESTNET."""

from __future__ import annotations

import pytest
from conftest import load_project_file

mode_gate_module = load_project_file("filter_plugins/mode_gate.py")
mode_gate = mode_gate_module.mode_gate

VAR = "BINANCE_TESTNET"


@pytest.mark.parametrize(
    "content",
    [
        "BINANCE_TESTNET=true\n",
        "export BINANCE_TESTNET=true\n",
        'BINANCE_TESTNET="true"\n',
        "BINANCE_TESTNET='true'  # set by ops\n",
        "BINANCE_TESTNET=true # set by ops\n",
        "# BINANCE_TESTNET=false\nOTHER=1\n  BINANCE_TESTNET = true\n",
        "BINANCE_TESTNET=true\nBINANCE_TESTNET=true\n",
    ],
)
def test_testnet_only_for_an_explicit_true(content: str) -> None:
    gate = mode_gate(content, VAR, "/etc/quantum/testnet.env")
    assert gate["mode"] == "TESTNET", gate
    assert gate["changes_allowed"] is True
    assert "/etc/quantum/testnet.env" in gate["reason"]


@pytest.mark.parametrize("content", ["BINANCE_TESTNET=false\n", "export BINANCE_TESTNET='false'\n"])
def test_live_for_false(content: str) -> None:
    gate = mode_gate(content, VAR)
    assert gate["mode"] == "LIVE"
    assert gate["changes_allowed"] is False
    assert "false" in gate["reason"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "missing or unreadable"),
        ("", "does not assign BINANCE_TESTNET"),
        ("# BINANCE_TESTNET=true\n", "does not assign"),
        ("BINANCE_TESTNET_OLD=true\n", "does not assign"),
        ("BINANCE_TESTNET=True\n", "neither true nor false"),
        ("BINANCE_TESTNET=1\n", "neither true nor false"),
        ("BINANCE_TESTNET=yes\n", "neither true nor false"),
        ("BINANCE_TESTNET=\n", "neither true nor false"),
        ("BINANCE_TESTNET=true\nBINANCE_TESTNET=false\n", "contradicting"),
        ('BINANCE_TESTNET="true\n', "unreadable value"),
        ("BINANCE_TESTNET='true' false\n", "unreadable value"),
    ],
)
def test_anything_else_is_unknown_with_a_reason(content: str | None, words: str) -> None:
    gate = mode_gate(content, VAR)
    assert gate["mode"] == "UNKNOWN", gate
    assert gate["changes_allowed"] is False
    assert words in gate["reason"]


def test_unreadable_says_why() -> None:
    gate = mode_gate(None, VAR, "/etc/quantum/testnet.env", "file not found: /etc/quantum/testnet.env.")
    assert gate["reason"] == (
        "/etc/quantum/testnet.env is missing or unreadable (file not found: /etc/quantum/testnet.env)"
    )


def test_contradiction_names_the_lines() -> None:
    gate = mode_gate("A=1\nBINANCE_TESTNET=true\n\nBINANCE_TESTNET=false\n", VAR)
    assert "line 2" in gate["reason"] and "line 4" in gate["reason"]
    assert [item["line"] for item in gate["assignments"]] == [2, 4]


def test_variable_is_data() -> None:
    assert mode_gate("SANDBOX=true\n", "SANDBOX")["mode"] == "TESTNET"
    assert mode_gate("SANDBOX=true\n", VAR)["mode"] == "UNKNOWN"
