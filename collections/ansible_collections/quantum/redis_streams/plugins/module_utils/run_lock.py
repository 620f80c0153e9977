# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The run lock on the target: one definition, used by run_lock (take, release) and by
# pipeline_snapshot (take it in the same call that reads the pipeline, one round trip less).
# One healing run at a time per pipeline: a lock directory taken atomically, released only by
# the run that holds it, taken over when its holder is proven gone or stale.
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from typing import Any

OWNER = "owner.json"
# Why a lock is only looked at, not taken, unless the caller says otherwise.
CHANGES_NOTHING = "check mode, or the run changes nothing"


class LockRefused(Exception):
    """The lock could not be taken: `message` is one sentence naming the lock; `found` holds
    what was found (`found`, `holder`, `age_s`, `owner`) when it is known."""

    def __init__(self, message: str, **found: Any) -> None:
        super().__init__(message)
        self.message = message
        self.found = found


def lock_option_problem(path: Any, stale_s: Any, prefix: str = "") -> str | None:
    """Why the lock's `path` or `stale_s` cannot be used, in one sentence naming the option
    (`prefix` names its parent: `lock.`); None when both can."""
    if not isinstance(path, str) or not os.path.isabs(path) or path in ("/", ""):
        return f"{prefix}path must be an absolute path below /, got {path!r}."
    if not isinstance(stale_s, int) or stale_s < 1:
        return f"{prefix}stale_s must be 1 or more, got {stale_s}."
    return None


def read_owner(path: str) -> dict[str, Any] | None:
    """The lock's owner file, or None when it is missing or not yet written (a run between its
    mkdir and its write: the lock is held by a run we cannot name)."""
    try:
        with open(os.path.join(path, OWNER), encoding="utf-8") as handle:
            owner = json.load(handle)
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def lock_age(path: str) -> int | None:
    try:
        return int(time.time() - os.stat(path).st_mtime)
    except OSError:
        return None


class RunLock:
    """The lock directory `path`, as the run `run_id` (of the controller process `controller`)
    finds, takes or releases it. `take_over_token`: the token of a lock whose holder the
    controller proved gone. `module` only receives the warnings of a take-over."""

    def __init__(
        self,
        module: Any,
        path: str,
        run_id: str | None,
        stale_s: int = 3600,
        controller: dict[str, Any] | None = None,
        take_over_token: str | None = None,
    ) -> None:
        self.module = module
        self.path = path.rstrip("/") or "/"
        self.run_id = run_id
        self.stale_s = stale_s
        self.controller = controller or {}
        self.take_over_token = take_over_token

    def refuse(self, msg: str, **found: Any) -> LockRefused:
        return LockRefused(f"{msg} (lock {self.path})", **found)

    def create(self) -> str | None:
        """mkdir, then the owner file: this run's token, or None when another run's mkdir won."""
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            return None
        except OSError as exc:
            raise self.refuse(
                f"Cannot take the run lock: {exc.strerror}: check that its directory exists and is writable"
            ) from exc
        token = secrets.token_hex(8)
        owner = {
            "run_id": self.run_id,
            "token": token,
            "taken_at": int(time.time()),
            "controller": self.controller,
        }
        temporary = os.path.join(self.path, f".{OWNER}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as fh:
            json.dump(owner, fh, indent=2)
            fh.write("\n")
        os.rename(temporary, os.path.join(self.path, OWNER))
        return token

    def set_aside(self, expected_token: str | None) -> bool:
        """Renames the lock aside when its owner file still holds `expected_token` (None: still
        has no owner file); puts back what it moved otherwise. True when the lock is gone."""
        aside = f"{self.path}.stale-{self.run_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # another run took it over first
        moved = read_owner(aside)
        if (moved or {}).get("token") != expected_token:
            try:
                os.rename(aside, self.path)  # not the lock we judged: a new one, put it back
            except OSError as exc:
                raise self.refuse(
                    f"A run lock was moved aside by mistake and could not be put back from {aside}"
                ) from exc
            return False
        shutil.rmtree(aside, ignore_errors=True)
        return True

    def take(self, dry_run: bool = False, why_not: str | None = None) -> dict[str, Any]:
        """Takes the lock (run_lock's result: `found`, `held`, `token`, `holder`, `age_s`,
        `owner` when one was found, `message`). With `dry_run` it only says who holds it, and
        why it is not taken (`why_not`; default: the run changes nothing). A lock held by
        another run raises LockRefused, unless `dry_run`."""
        owner = read_owner(self.path) if os.path.isdir(self.path) else None
        if not os.path.lexists(self.path):
            found, message = "free", "The run lock is free"
        else:
            holder = str((owner or {}).get("run_id") or "an unknown run")
            age = lock_age(self.path)
            if self.take_over_token and (owner or {}).get("token") == self.take_over_token:
                pid = (owner or {}).get("controller", {}).get("pid")
                found = "orphaned"
                message = (
                    f"Taking over the run lock of {holder}: its ansible-playbook (pid {pid} on this "
                    "controller) is gone, killed or crashed mid-run"
                )
            elif age is not None and age > self.stale_s:
                found = "stale"
                message = (
                    f"Taking over a stale run lock held by {holder} for {age} s (older than "
                    f"{self.stale_s} s): that run is assumed dead"
                )
            else:
                age_text = "at an unknown time" if age is None else f"{age} s ago"
                held = {"found": "held", "holder": holder, "age_s": age, "owner": owner}
                sentence = (
                    f"Another run ({holder}) holds the run lock, taken {age_text}: wait for it to "
                    "finish, or remove the lock directory if that run is gone"
                )
                if dry_run:
                    note = f"not taken ({why_not})" if why_not else "this run changes nothing, so it goes on"
                    return dict(held, held=False, token=None, message=f"{sentence}; {note}")
                raise self.refuse(sentence, **held)
        result = {
            "found": found,
            "holder": None if found == "free" else holder,
            "age_s": None if found == "free" else age,
            "held": False,
            "token": None,
        }
        if owner is not None:
            result["owner"] = owner
        if dry_run:
            return dict(result, message=f"{message}; not taken ({why_not or CHANGES_NOTHING})")
        known = {key: result[key] for key in ("found", "holder", "age_s")}
        if found != "free":
            self.module.warn(f"{message} (lock {self.path})")
            if not self.set_aside((owner or {}).get("token")):
                raise self.refuse(
                    f"{message}, but another run took it over first", **dict(known, found="held")
                )
        try:
            token = self.create()
        except LockRefused as exc:
            exc.found = dict(known, **exc.found)
            raise
        if token is None:
            raise self.refuse(
                "Cannot take the run lock: another run took it at the same moment, wait for it to finish",
                **dict(known, found="held"),
            )
        return dict(result, held=True, token=token, message=f"{message}; taken by {self.run_id}")

    def release(self, token: str | None, dry_run: bool = False) -> dict[str, Any]:
        """Removes the lock when its owner file holds `token`; never another run's lock."""
        base = {"held": False, "token": None, "age_s": None}
        if not os.path.lexists(self.path):
            return dict(base, found="absent", holder=None, message="No run lock to release")
        owner = read_owner(self.path)
        holder = (owner or {}).get("run_id")
        if (owner or {}).get("token") != token or not token:
            named = holder or "an unknown run"
            message = f"The run lock is not this run's (held by {named}): left in place"
            return dict(base, found="held", holder=holder, message=message)
        if not dry_run:
            shutil.rmtree(self.path)
        return dict(base, found="released", holder=holder, message="The run lock was released")
