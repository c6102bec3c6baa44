"""`aegis ui`: serve the Chainlit chat (agent/ui/app.py) in a browser, as this very process.

Who may reach the chat is settled here (agent/ui/access.py) and enforced again inside the app.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from agent.cli.options import EXIT_OK, add_backend_flag
from agent.models import make_chat_model
from agent.ui.access import MIN_PASSWORD_CHARS, USERS_VAR, hash_password, served_origins
from tools.core.errors import AegisError
from tools.core.paths import PROJECT_ROOT, allowed_data_dirs, runs_dir

APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="chat with the agent in the browser (Chainlit)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--model", help="offline (default) or openai:MODEL; sets AEGIS_MODEL for the app")
    add_backend_flag(p)
    p.add_argument(
        "--hash-password",
        action="store_true",
        help=f"ask for a password (not echoed) and print its hash for a `name:HASH` line of the {USERS_VAR} file",
    )
    p.set_defaults(handler=cmd_ui)


def ui_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "chainlit", "run", str(APP), "--headless", "--host", host, "--port", str(port)]


def ui_env(model: str | None = None, backend: str | None = None) -> dict[str, str]:
    """The app's environment: Chainlit's files from the project root, paths and state as in this shell.

    Chainlit reads chainlit.md and .chainlit/ from CHAINLIT_APP_ROOT; the process keeps this cwd, and the
    runs folder and data folders are pinned to what the CLI would use here, so both share one checkpointer.
    """
    make_chat_model(model)  # a bad model choice fails here, in one line, not in the browser
    env = dict(os.environ)
    if model:
        env["AEGIS_MODEL"] = model
    if backend:
        env["AEGIS_BACKEND"] = backend
    env["CHAINLIT_APP_ROOT"] = str(PROJECT_ROOT)
    env["AEGIS_RUNS_DIR"] = str(runs_dir().resolve())
    env.setdefault("AEGIS_DATA_DIRS", os.pathsep.join(str(p) for p in allowed_data_dirs()))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def print_password_hash() -> int:
    password = getpass.getpass("password: ")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AegisError(f"a password needs at least {MIN_PASSWORD_CHARS} characters; nothing was printed")
    if getpass.getpass("again: ") != password:
        raise AegisError("the two passwords differ; nothing was printed")
    print(hash_password(password))
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    """Check who may connect, then become the Chainlit server: a signal for `aegis ui` reaches the server itself."""
    if args.hash_password:
        return print_password_hash()
    env = ui_env(args.model, args.backend)
    origins = served_origins(args.host, args.port)
    print(f"Aegis-ML chat on {origins[0]} (runs in {env['AEGIS_RUNS_DIR']}); Ctrl-C to stop.", flush=True)
    os.execve(sys.executable, ui_command(args.host, args.port), env)
