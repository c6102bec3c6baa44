"""`aegis ui`: serve the Chainlit chat (agent/chainlit_app.py) in a browser."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tools.paths import PROJECT_ROOT, allowed_data_dirs, runs_dir

APP = PROJECT_ROOT / "agent" / "chainlit_app.py"


def register_ui_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="chat with the agent in the browser (Chainlit)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--model", help="offline (default) or openai:MODEL; sets AEGIS_MODEL for the app")
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


def cmd_ui(args: argparse.Namespace) -> int:
    env = ui_env(args.model)
    print(f"Aegis-ML chat on http://{args.host}:{args.port} (runs in {env['AEGIS_RUNS_DIR']}); Ctrl-C to stop.")
    try:
        return subprocess.call(ui_command(args.host, args.port), env=env)
    except KeyboardInterrupt:
        return 130
