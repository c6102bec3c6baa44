"""Who a CLI spend counts against: the operator's AEGIS_USER (a shared service account names its caller), else the
OS user. The chat page passes its signed-in user instead."""

from __future__ import annotations

import getpass
import os
import re

from tools.core.settings import settings

UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


def person_name(raw: str) -> str:
    """A name as the store keeps it: letters, digits and . _ @ -, at most 64 characters."""
    return UNSAFE.sub("_", raw.strip())[:64] or "unknown"


def person_or_cli(person: str | None) -> str:
    """The person a caller named (the chat page's signed-in user), else the CLI's."""
    return person_name(person) if person else cli_person()


def cli_person() -> str:
    configured = settings().user
    if configured:
        return person_name(configured)
    try:
        return person_name(getpass.getuser())
    except (KeyError, OSError):  # no passwd entry in a bare container
        return f"uid-{os.getuid()}"
