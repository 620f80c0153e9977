# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The mode gate: one definition, used by pipeline_snapshot (which reads the mode file on the
# target).
"""The mode gate: what a mode file says, read exactly as systemd reads it.

The mode file is the `EnvironmentFile=` of the pipeline's units, so the only meaning that
counts is the one systemd gives it. `load_env_file` is a port of systemd 252 (Debian 12's
version, 252.38): `parse_env_file_internal()` and `load_env_file()` in src/basic/env-file.c,
the whole-file read of `read_full_file()` (src/basic/fileio.c: a NUL byte refuses the file),
then `strv_env_clean_with_callback()` and `env_assignment_is_valid()` in src/basic/env-util.c,
as `exec_context_load_environment()` in src/core/execute.c applies them to every
`EnvironmentFile=`. What that means for an operator:

- no shell syntax: `export NAME=value` is read as the name `export NAME`, which is not a valid
  variable name, so systemd ignores the line; `$VAR` is not expanded;
- a comment is a line whose first non-blank character is `#` or `;`; a `#` anywhere else is
  part of the value (`NAME=true # note` gives `true # note`), and a comment line ending in a
  backslash swallows the next line;
- blanks around the name and the `=`, before the value and at the end of an unquoted value are
  dropped; quotes are removed only where a value (or a part after a closing quote) starts
  with one: `"tr"ue` is `true`, `tr"ue"` stays `tr"ue"`;
- a backslash at the end of a line continues it (not before a CRLF: the CR ends the line);
  an unclosed quote runs to the end of the file;
- the last assignment of a name wins; a key or value that is not valid UTF-8 makes systemd
  refuse the whole file (the unit does not start).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from typing import Any

TESTNET = "TESTNET"
LIVE = "LIVE"
UNKNOWN = "UNKNOWN"

# src/basic/string-util.h, src/basic/escape.h, src/basic/env-util.c (systemd 252).
_WHITESPACE = " \t\n\r"
_NEWLINE = "\n\r"
_COMMENTS = "#;"
_SHELL_NEED_ESCAPE = '"\\`$'
_VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
# sysconf(_SC_ARG_MAX) with Linux's default 8 MiB stack limit. Only very long names or values
# hit it, and a value that long is never `true`: it cannot change the mode.
_ARG_MAX = 2 * 1024 * 1024


@dataclass(frozen=True)
class EnvAssignment:
    """One `key=value` systemd's parser produced. `key` may be invalid (`export NAME`); systemd
    then drops it. Lines are 1-based; `last_line` differs when the value ran on (a trailing
    backslash, an open quote)."""

    key: str
    value: str
    first_line: int
    last_line: int


@dataclass(frozen=True)
class EnvComment:
    """A comment: `last_line` differs when a trailing backslash swallowed the lines after it."""

    first_line: int
    last_line: int


@dataclass
class EnvFile:
    """What systemd makes of an env file: `environment` is what a unit gets (ordered by first
    assignment, last assignment wins); `error` says why systemd would refuse the whole file
    (then `environment` is empty and the unit does not start)."""

    environment: dict[str, str] = field(default_factory=dict)
    assignments: list[EnvAssignment] = field(default_factory=list)
    comments: list[EnvComment] = field(default_factory=list)
    error: str | None = None


def _line_starts(content: str) -> list[int]:
    """The 1-based line of every character (CRLF, CR and LF each end a line), plus one entry
    for the end of the text."""
    lines: list[int] = []
    line = 1
    previous = ""
    for char in content:
        if char == "\n" and previous == "\r":
            lines.append(line - 1)  # the LF of a CRLF belongs to the line its CR ended
        else:
            lines.append(line)
            if char in _NEWLINE:
                line += 1
        previous = char
    lines.append(line)
    return lines


def _is_valid_utf8(text: str) -> bool:
    """systemd's utf8_is_valid() on the bytes behind `text`: bytes that were not UTF-8 arrive
    as lone surrogates (Python's surrogateescape, as Ansible's b64decode gives them); systemd
    also refuses the non-characters U+FDD0..U+FDEF and U+xxFFFE/U+xxFFFF."""
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return False
    return True


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def parse_env_file(content: str) -> tuple[list[EnvAssignment], list[EnvComment]]:
    """Port of parse_env_file_internal() (systemd 252, src/basic/env-file.c): every key/value
    pair it pushes, in order, and every comment. The state names are systemd's."""
    assignments: list[EnvAssignment] = []
    comments: list[EnvComment] = []
    lines = _line_starts(content)
    key: list[str] = []
    value: list[str] = []
    last_key_whitespace: int | None = None
    last_value_whitespace: int | None = None
    key_line = comment_line = 1
    state = "PRE_KEY"

    def push(index: int) -> None:
        name = "".join(key[:last_key_whitespace] if last_key_whitespace is not None else key)
        text = "".join(value)
        if state == "VALUE" and last_value_whitespace is not None:
            # Chomp trailing whitespace off an unquoted value.
            text = text[:last_value_whitespace]
        assignments.append(EnvAssignment(name, text, key_line, lines[index]))
        key.clear()
        value.clear()

    for index, char in enumerate(content):
        if state == "PRE_KEY":
            if char in _COMMENTS:
                state = "COMMENT"
                comment_line = lines[index]
            elif char not in _WHITESPACE:
                state = "KEY"
                last_key_whitespace = None
                key_line = lines[index]
                key.append(char)
        elif state == "KEY":
            if char in _NEWLINE:
                state = "PRE_KEY"
                key.clear()
            elif char == "=":
                state = "PRE_VALUE"
                last_value_whitespace = None
            else:
                if char not in _WHITESPACE:
                    last_key_whitespace = None
                elif last_key_whitespace is None:
                    last_key_whitespace = len(key)
                key.append(char)
        elif state == "PRE_VALUE":
            if char in _NEWLINE:
                push(index)
                state = "PRE_KEY"
            elif char == "'":
                state = "SINGLE_QUOTE_VALUE"
            elif char == '"':
                state = "DOUBLE_QUOTE_VALUE"
            elif char == "\\":
                state = "VALUE_ESCAPE"
            elif char not in _WHITESPACE:
                state = "VALUE"
                value.append(char)
        elif state == "VALUE":
            if char in _NEWLINE:
                push(index)
                state = "PRE_KEY"
            elif char == "\\":
                state = "VALUE_ESCAPE"
                last_value_whitespace = None
            else:
                if char not in _WHITESPACE:
                    last_value_whitespace = None
                elif last_value_whitespace is None:
                    last_value_whitespace = len(value)
                value.append(char)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if char not in _NEWLINE:
                # An escaped newline is eaten entirely (a continuation line).
                value.append(char)
        elif state == "SINGLE_QUOTE_VALUE":
            if char == "'":
                state = "PRE_VALUE"
            else:
                value.append(char)
        elif state == "DOUBLE_QUOTE_VALUE":
            if char == '"':
                state = "PRE_VALUE"
            elif char == "\\":
                state = "DOUBLE_QUOTE_VALUE_ESCAPE"
            else:
                value.append(char)
        elif state == "DOUBLE_QUOTE_VALUE_ESCAPE":
            state = "DOUBLE_QUOTE_VALUE"
            if char in _SHELL_NEED_ESCAPE:
                value.append(char)
            elif char != "\n":
                # Any other escaped character keeps its backslash, like the shell.
                value.extend(("\\", char))
        elif state == "COMMENT":
            if char == "\\":
                state = "COMMENT_ESCAPE"
            elif char in _NEWLINE:
                state = "PRE_KEY"
                comments.append(EnvComment(comment_line, lines[index]))
        elif state == "COMMENT_ESCAPE":
            # systemd 252 skips whatever follows a backslash in a comment, a newline included.
            state = "COMMENT"

    end = max(len(content) - 1, 0)
    if state in (
        "PRE_VALUE",
        "VALUE",
        "VALUE_ESCAPE",
        "SINGLE_QUOTE_VALUE",
        "DOUBLE_QUOTE_VALUE",
        "DOUBLE_QUOTE_VALUE_ESCAPE",
    ):
        push(end)
    elif state in ("COMMENT", "COMMENT_ESCAPE"):
        comments.append(EnvComment(comment_line, lines[end]))
    return assignments, comments


def _assignment_is_valid(name: str, value: str) -> bool:
    """env_assignment_is_valid() on `name=value` (systemd 252, src/basic/env-util.c)."""
    return (
        _VALID_NAME.match(name) is not None
        and _utf8_length(name) <= _ARG_MAX - 2
        and _is_valid_utf8(value)
        and _utf8_length(value) <= _ARG_MAX - 3
        and _utf8_length(name) + 1 + _utf8_length(value) <= _ARG_MAX - 1
    )


def load_env_file(content: str) -> EnvFile:
    """What a unit gets from `EnvironmentFile=` holding `content`: load_env_file() (each pushed
    pair checked for UTF-8, then strv_env_replace_consume(): the last assignment of a name
    wins), then strv_env_clean_with_callback(), which drops invalid names and values."""
    if "\0" in content:
        # read_full_file() without a size refuses embedded NUL bytes (EBADMSG).
        return EnvFile(error="it holds a NUL byte")
    assignments, comments = parse_env_file(content)
    result = EnvFile(assignments=assignments, comments=comments)
    entries: dict[str, str] = {}
    for item in assignments:
        if not _is_valid_utf8(item.key) or not _is_valid_utf8(item.value):
            result.error = f"line {item.first_line} is not valid UTF-8"
            return result
        # strv_env_replace_consume() matches on the text before the first `=` of `key=value`.
        # (the text always holds that `=`: split() gives exactly the two parts).
        name, value = f"{item.key}={item.value}".split("=", 1)
        entries[name] = value
    result.environment = {name: value for name, value in entries.items() if _assignment_is_valid(name, value)}
    return result


def _shown(value: str) -> str:
    """A value of the mode variable, quoted for a sentence (the mode variable's values only)."""
    return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."


def _reported(item: EnvAssignment) -> str | None:
    """The value of an assignment of the mode variable as the result may carry it: None when it
    runs on over other lines (they may hold another variable's secret) or is not valid UTF-8."""
    single_line = item.first_line == item.last_line or item.value in ("true", "false")
    return item.value if single_line and _is_valid_utf8(item.value) else None


def _mentions(line: str, variable: str) -> bool:
    """A line that looks like it sets `variable` (`NAME=`, `export NAME=`, ...) and is not a
    comment: the lines systemd must read as an assignment of it, or the operator is misled."""
    text = line.lstrip(" \t")
    if not text or text[0] in _COMMENTS or "=" not in text:
        return False
    return variable in text.split("=", 1)[0].split()


def _misread(content: str, parsed: EnvFile, variable: str, source: str) -> str | None:
    """Why a line that looks like an assignment of `variable` is not one for systemd, or None."""
    for number, line in enumerate(re.split(r"\r\n|\r|\n", content), start=1):
        if not _mentions(line, variable):
            continue
        starting = [item for item in parsed.assignments if item.first_line == number]
        if any(item.key == variable for item in starting):
            continue
        if starting:
            key, value = starting[0].key, _reported(starting[0])
            shown = value if value and value.isprintable() and len(value) <= 40 else "..."
            text = f"`{key}={shown}`"
            return (
                f"{text} on line {number} of {source} is not an assignment systemd reads: `{key}` is not "
                f"a valid variable name, so systemd ignores the line (write `{variable}=` first on the line)"
            )
        for comment in parsed.comments:
            if comment.first_line < number <= comment.last_line:
                return (
                    f"line {number} of {source} sets {variable} only in appearance: systemd reads it as part "
                    f"of the comment that starts on line {comment.first_line} (a comment line ending in a "
                    "backslash continues onto the next line)"
                )
        for item in parsed.assignments:
            if item.first_line < number <= item.last_line:
                return (
                    f"line {number} of {source} sets {variable} only in appearance: systemd reads it as part "
                    f"of the value assigned on line {item.first_line} (a line ending in a backslash "
                    "continues onto the next, a quote runs to its closing quote)"
                )
        return f"line {number} of {source} sets {variable} only in appearance: systemd does not read it"
    return None


def _verdict(mode: str, reason: str, found: list[dict[str, Any]]) -> dict[str, Any]:
    """The gate's decision, as mode_gate and read_mode_gate return it."""
    return {"mode": mode, "reason": reason, "changes_allowed": mode == TESTNET, "assignments": found}


def mode_gate(
    content: str | None, variable: str, source: str = "the mode file", error: str | None = None
) -> dict[str, Any]:
    """What the mode file says: {mode: TESTNET|LIVE|UNKNOWN, reason, changes_allowed,
    assignments: [{line, value}]}, with the file read as systemd's `EnvironmentFile=` reads it
    (`load_env_file`). `content` None means the file is missing or unreadable (`error`: why,
    when known). `assignments` are the assignments of `variable` systemd reads, with the value
    it reads (None when the value runs on over other lines: they may hold other variables'
    secrets, so it is not echoed). Nothing of any other variable ever appears in the result.

    TESTNET only when the value systemd gives a unit is exactly `true` AND nothing in the file
    contradicts it. systemd lets the last assignment win, but the gate is stricter: every
    assignment of `variable` must say the same thing, and no line may only look like one
    (`export NAME=...`, a line swallowed by a continued comment or value); otherwise the mode
    is UNKNOWN. LIVE when the value is `false` under the same rules. Anything else is UNKNOWN;
    the reason is one sentence telling the operator what to fix."""

    if content is None:
        detail = f" ({error.strip().rstrip('.')})" if error else ""
        return _verdict(UNKNOWN, f"{source} is missing or unreadable{detail}", [])
    if not _VALID_NAME.match(variable):
        return _verdict(UNKNOWN, f"the mode variable {variable!r} is not a name systemd accepts", [])
    parsed = load_env_file(content)
    mine = [item for item in parsed.assignments if item.key == variable]
    found = [{"line": item.first_line, "value": _reported(item)} for item in mine]
    if parsed.error:
        return _verdict(UNKNOWN, f"systemd would refuse to load {source}: {parsed.error}", found)
    misread = _misread(content, parsed, variable, source)
    if misread:
        return _verdict(UNKNOWN, misread, found)
    if not found:
        return _verdict(UNKNOWN, f"{source} does not assign {variable}", found)
    for item in mine:
        if _reported(item) is None:
            reason = (
                f"the value of {variable} on line {item.first_line} of {source} runs on to line "
                f"{item.last_line} (a trailing backslash or an unclosed quote), so it is neither true "
                "nor false"
            )
            return _verdict(UNKNOWN, reason, found)
        if item.value not in ("true", "false"):
            hint = ""
            if "#" in item.value:
                hint = " (systemd keeps a `#` after the value as part of it: put comments on their own line)"
            elif "'" in item.value or '"' in item.value:
                hint = " (systemd removes quotes only around a whole value)"
            reason = (
                f"{variable}={_shown(item.value)} on line {item.first_line} of {source}, as systemd reads "
                f"it, is neither true nor false{hint}"
            )
            return _verdict(UNKNOWN, reason, found)
    values = {item["value"] for item in found}
    if len(values) > 1:
        where = ", ".join(f"line {item['line']}: {item['value']!r}" for item in found)
        reason = (
            f"{source} assigns {variable} contradicting values ({where}), and the gate takes no side "
            "even though systemd would use the last one"
        )
        return _verdict(UNKNOWN, reason, found)
    value = values.pop()
    if parsed.environment.get(variable) != value:
        reason = f"systemd drops the assignment of {variable} in {source} (it is longer than ARG_MAX allows)"
        return _verdict(UNKNOWN, reason, found)
    lines = "line " + ", ".join(str(item["line"]) for item in found)
    mode = TESTNET if value == "true" else LIVE
    return _verdict(mode, f"{variable}={value} in {source} ({lines})", found)


def _read_error(exc: OSError, path: str) -> str:
    """Why the file cannot be read, in the words Ansible's slurp used (this read replaced it)."""
    if exc.errno == errno.ENOENT:
        return f"File not found: {path}"
    if exc.errno == errno.EACCES:
        return f"File is not readable: {path}"
    if exc.errno == errno.EISDIR:
        return f"Source is a directory and must be a file: {path}"
    return f"Unable to read file: {path} ({exc.strerror or type(exc).__name__})"


def read_mode_gate(path: str, variable: str) -> dict[str, Any]:
    """mode_gate on the file at `path` (named by its path in the reason), read whole, as systemd
    reads an `EnvironmentFile=`: bytes that are not UTF-8 become lone surrogates, which the gate
    refuses as systemd does. A file that cannot be read is UNKNOWN with why. The content never
    leaves this function: not in the result, not in an exception (a failure of the gate itself
    is UNKNOWN too, named by the exception's type alone, whose message might quote the file)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return mode_gate(None, variable, path, _read_error(exc, path))
    try:
        return mode_gate(data.decode("utf-8", "surrogateescape"), variable, path)
    except Exception as exc:  # a failure of the gate itself: see the docstring
        reason = f"the mode gate failed on {path} ({type(exc).__name__}; the file's content is not shown)"
        return _verdict(UNKNOWN, reason, [])
