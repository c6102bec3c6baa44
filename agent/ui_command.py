"""`aegis ui`: serve the Chainlit chat (agent/chainlit_app.py) in a browser, as this very process.

Who may reach the chat is settled here and enforced again inside the app: on loopback, anyone at this machine,
each browser tab owning its own approvals; beyond loopback, only the people listed in AEGIS_UI_USERS, signed in
with a password. Browsers may talk to it only from the address it is served at.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tools.core.errors import AegisError
from tools.core.paths import PROJECT_ROOT, allowed_data_dirs, runs_dir

APP = PROJECT_ROOT / "agent" / "chainlit_app.py"
USERS_VAR, SECRET_VAR, ORIGINS_VAR = "AEGIS_UI_USERS", "CHAINLIT_AUTH_SECRET", "AEGIS_UI_ORIGINS"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})
MIN_SECRET_CHARS = 32
MIN_PASSWORD_CHARS = 10
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB and about 50 ms a try
MAX_SCRYPT_BYTES = 32 * 2**20  # the most memory a hash line may make one sign-in take
_ORIGIN = re.compile(r"https?://[^/\s]+")


def register_ui_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="chat with the agent in the browser (Chainlit)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--model", help="offline (default) or openai:MODEL; sets AEGIS_MODEL for the app")
    p.add_argument(
        "--hash-password",
        action="store_true",
        help=f"ask for a password (not echoed) and print its hash for a `name:HASH` line of the {USERS_VAR} file",
    )
    p.set_defaults(handler=cmd_ui)


def ui_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "chainlit", "run", str(APP), "--headless", "--host", host, "--port", str(port)]


def ui_env(model: str | None = None) -> dict[str, str]:
    """The app's environment: Chainlit's files from the project root, paths and state as in this shell.

    Chainlit reads chainlit.md and .chainlit/ from CHAINLIT_APP_ROOT; the process keeps this cwd, and the
    runs folder and data folders are pinned to what the CLI would use here, so both share one checkpointer.
    """
    from agent.models import make_chat_model

    env = dict(os.environ)
    if model:
        env["AEGIS_MODEL"] = model
    make_chat_model(env.get("AEGIS_MODEL"))  # a bad model choice fails here, in one line, not in the browser
    env["CHAINLIT_APP_ROOT"] = str(PROJECT_ROOT)
    env["AEGIS_RUNS_DIR"] = str(runs_dir().resolve())
    env.setdefault("AEGIS_DATA_DIRS", os.pathsep.join(str(p) for p in allowed_data_dirs()))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def allowed_origins(host: str, port: int, env: Mapping[str, str]) -> list[str]:
    """The origins a browser may use: the served address (and its localhost name), plus AEGIS_UI_ORIGINS.

    A wildcard host has no address a browser would use, so it needs AEGIS_UI_ORIGINS (the public address,
    e.g. behind a proxy); a page from any other origin is refused, so no other site can drive the chat.
    """
    served: list[str] = []
    if host not in WILDCARD:
        served.append(f"http://{f'[{host}]' if ':' in host else host}:{port}")
    if host in LOOPBACK:
        served += [f"http://{name}:{port}" for name in ("127.0.0.1", "localhost") if name != host]
    extra = [origin.rstrip("/") for origin in re.split(r"[\s,]+", env.get(ORIGINS_VAR, "")) if origin]
    for origin in extra:
        if not _ORIGIN.fullmatch(origin):
            raise AegisError(f"{ORIGINS_VAR}: {origin!r} is not an origin like https://aegis.example.com:8443")
    if not served and not extra:
        raise AegisError(
            f"--host {host} listens on every interface, so browsers will use some other address: set {ORIGINS_VAR} "
            f"to it (e.g. http://myhost:{port}); requests from any other origin are refused"
        )
    return list(dict.fromkeys(served + extra))


def check_access(host: str, env: Mapping[str, str]) -> None:
    """Refuse to serve the chat beyond loopback without sign-in, or with sign-in half configured."""
    users = env.get(USERS_VAR)
    if users:
        load_users(Path(users))
        if len(env.get(SECRET_VAR, "")) < MIN_SECRET_CHARS:
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


def _print_password_hash() -> int:
    password = getpass.getpass("password: ")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AegisError(f"a password needs at least {MIN_PASSWORD_CHARS} characters; nothing was printed")
    if getpass.getpass("again: ") != password:
        raise AegisError("the two passwords differ; nothing was printed")
    print(hash_password(password))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Check who may connect, then become the Chainlit server: a signal for `aegis ui` reaches the server itself."""
    if args.hash_password:
        return _print_password_hash()
    env = ui_env(args.model)
    check_access(args.host, env)
    origins = allowed_origins(args.host, args.port, env)
    print(f"Aegis-ML chat on {origins[0]} (runs in {env['AEGIS_RUNS_DIR']}); Ctrl-C to stop.", flush=True)
    os.execve(sys.executable, ui_command(args.host, args.port), env)
