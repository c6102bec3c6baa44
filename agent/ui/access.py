"""Who may reach the chat: settled by `aegis ui` before it serves, and enforced again inside the app.

On loopback, anyone at this machine, each browser tab owning its own approvals; beyond loopback, only the
people listed in AEGIS_UI_USERS, signed in with a password. Browsers may talk to it only from the address it
is served at (and AEGIS_UI_ORIGINS).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from tools.core.errors import AegisError
from tools.core.settings import settings

USERS_VAR, SECRET_VAR, ORIGINS_VAR = "AEGIS_UI_USERS", "CHAINLIT_AUTH_SECRET", "AEGIS_UI_ORIGINS"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})
MIN_SECRET_CHARS = 32
MIN_PASSWORD_CHARS = 10
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB and about 50 ms a try
MAX_SCRYPT_BYTES = 32 * 2**20  # the most memory a hash line may make one sign-in take
_ORIGIN = re.compile(r"https?://[^/\s]+")


def allowed_origins(host: str, port: int, extra_origins: str = "") -> list[str]:
    """The origins a browser may use: the served address (and its localhost name), plus ``extra_origins``.

    A wildcard host has no address a browser would use, so it needs AEGIS_UI_ORIGINS (the public address,
    e.g. behind a proxy); a page from any other origin is refused, so no other site can drive the chat.
    """
    served: list[str] = []
    if host not in WILDCARD:
        served.append(f"http://{f'[{host}]' if ':' in host else host}:{port}")
    if host in LOOPBACK:
        served += [f"http://{name}:{port}" for name in ("127.0.0.1", "localhost") if name != host]
    extra = [origin.rstrip("/") for origin in re.split(r"[\s,]+", extra_origins) if origin]
    for origin in extra:
        if not _ORIGIN.fullmatch(origin):
            raise AegisError(f"{ORIGINS_VAR}: {origin!r} is not an origin like https://aegis.example.com:8443")
    if not served and not extra:
        raise AegisError(
            f"--host {host} listens on every interface, so browsers will use some other address: set {ORIGINS_VAR} "
            f"to it (e.g. http://myhost:{port}); requests from any other origin are refused"
        )
    return list(dict.fromkeys(served + extra))


def check_access(host: str, users: Path | None, secret: str) -> None:
    """Refuse to serve the chat beyond loopback without sign-in, or with sign-in half configured."""
    if users:
        load_users(users)
        if len(secret) < MIN_SECRET_CHARS:
            raise AegisError(
                f"{USERS_VAR} turns on sign-in, which needs {SECRET_VAR}: set it to {MIN_SECRET_CHARS} or more random "
                "characters (`chainlit create-secret` prints one)"
            )
    elif host not in LOOPBACK:
        raise AegisError(
            f"--host {host} serves the chat beyond this machine, so it needs sign-in: set {USERS_VAR} to a file of "
            f"`name:HASH` lines (`aegis ui --hash-password` makes a HASH) and {SECRET_VAR} (`chainlit create-secret`), "
            "or serve on --host 127.0.0.1"
        )


def served_origins(host: str, port: int) -> list[str]:
    """Check the operator's settings for serving on host:port; the origins allowed there."""
    operator = settings()
    check_access(host, operator.ui_users, os.environ.get(SECRET_VAR, ""))
    return allowed_origins(host, port, operator.ui_origins)


@dataclass(frozen=True)
class PasswordHash:
    """An scrypt hash as written in the users file: `scrypt$N$r$p$SALT_HEX$KEY_HEX`."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not scrypt$N$r$p$SALT$KEY")
        n, r, p = (int(part) for part in parts[1:4])
        salt, key = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
        if n < SCRYPT_N or n & (n - 1) or r < 1 or p < 1 or 128 * n * r * p > MAX_SCRYPT_BYTES:
            raise ValueError("scrypt parameters out of range")
        if len(salt) < 16 or len(key) < 32:
            raise ValueError("salt or key too short")
        return cls(n, r, p, salt, key)

    def matches(self, password: str) -> bool:
        key = hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=2 * MAX_SCRYPT_BYTES,
            dklen=len(self.key),
        )
        return hmac.compare_digest(key, self.key)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def load_users(path: Path) -> dict[str, PasswordHash]:
    """The users file: `name:HASH` lines, `#` comments. Errors name the line, never its content."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AegisError(f"{USERS_VAR}: cannot read {path} ({type(exc).__name__})") from None
    users: dict[str, PasswordHash] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, stored = (part.strip() for part in line.partition(":"))
        if not name or name in users:
            raise AegisError(f"{USERS_VAR}: {path} line {number} has no name before the `:`, or a name used before")
        try:
            users[name] = PasswordHash.parse(stored)
        except ValueError:
            raise AegisError(
                f"{USERS_VAR}: {path} line {number} is not `name:HASH` with a HASH from `aegis ui --hash-password`"
            ) from None
    if not users:
        raise AegisError(f"{USERS_VAR}: {path} lists nobody; add `name:HASH` lines (`aegis ui --hash-password`)")
    return users


@functools.cache
def _decoy() -> PasswordHash:
    return PasswordHash.parse(hash_password(secrets.token_hex(16)))


def password_ok(path: Path, name: str, password: str) -> bool:
    """Check a sign-in against the users file, read afresh so that deleting a line locks that person out.

    An unknown name costs the same scrypt as a known one, so the answer's timing does not reveal who exists.
    """
    users = load_users(path)
    return users.get(name, _decoy()).matches(password) and name in users
