"""Use a trained run: `aegis generate RUN "prompt"`, `aegis chat-model RUN`, `aegis export RUN`, `aegis push RUN REPO`.

RUN is a run id, a unique start of one, or `latest` (`aegis runs` lists them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from agent.cli.options import EXIT_OK, bounded_int
from agent.cli.output import console, err_console
from tools.core.errors import AegisError
from tools.use.export import default_export_dir, export_run, gguf_converter
from tools.use.generate import ModelWorker, open_model
from tools.use.protocol import GenerationSettings
from tools.use.push import check_repo_id, push_folder
from tools.use.runs import RunRecord, find_run

EXIT_WORDS = {"/exit", "/quit", "exit", "quit"}


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 5.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 (greedy) and 5")
    return value


def _generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=bounded_int(1, 4096), default=200, help="longest answer (default 200)")
    p.add_argument("--temperature", type=_temperature, default=0.0, help="0 (default) is greedy: the same answer")
    p.add_argument("--base", action="store_true", help="also show the base model's answer")


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="answer a prompt with a run's fine-tuned model (streamed)")
    g.add_argument("run", help="a run id, a unique start of one, or `latest`")
    g.add_argument("prompt", help="what to ask, as the person would in a chat")
    _generation_flags(g)
    g.set_defaults(handler=cmd_generate)
    c = sub.add_parser("chat-model", help="talk to a run's fine-tuned model in the terminal (streamed)")
    c.add_argument("run", help="a run id, a unique start of one, or `latest`")
    _generation_flags(c)
    c.set_defaults(handler=cmd_chat_model)
    e = sub.add_parser("export", help="write a run's model, tokenizer and model card to a self-contained folder")
    e.add_argument("run", help="a run id, a unique start of one, or `latest`")
    e.add_argument("--out", type=Path, help="the folder (default runs/RUN/export or export-merged)")
    e.add_argument("--merge", action="store_true", help="fold the adapter into the base: plain safetensors weights")
    e.add_argument("--gguf", action="store_true", help="also GGUF and an Ollama Modelfile (needs llama.cpp)")
    e.add_argument("--force", action="store_true", help="replace an earlier export in the same folder")
    e.set_defaults(handler=cmd_export)
    p = sub.add_parser("push", help="upload a run's export to a Hugging Face Hub repository")
    p.add_argument("run", help="a run id, a unique start of one, or `latest`")
    p.add_argument("repo_id", help="OWNER/NAME on the Hub")
    p.add_argument("--merge", action="store_true", help="push the merged weights (exported first if needed)")
    p.add_argument("--public", action="store_true", help="make a new repository public (default private)")
    p.set_defaults(handler=cmd_push)


def _settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)


def _stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _say(worker: ModelWorker, messages: list[dict[str, str]], args: argparse.Namespace) -> str:
    """Stream the tuned model's answer (and the base model's after it, when asked); the tuned answer."""
    if args.base:
        err_console.print("[bold]fine-tuned:[/]")
    base_started: list[bool] = []

    def base_token(text: str) -> None:
        if not base_started:
            print(flush=True)
            err_console.print("[bold]base model:[/]")
            base_started.append(True)
        _stream(text)

    result = worker.answer(messages, _settings(args), on_token=_stream, with_base=args.base, on_base_token=base_token)
    if not result.tuned:
        err_console.print("(the fine-tuned model answered with nothing)")
    print(flush=True)
    return result.tuned


def _load(run: RunRecord, args: argparse.Namespace) -> ModelWorker:
    """The run's model in its worker process; what isolates it is said before it answers."""
    run.final_dir()  # a run without a model says so before anything loads
    err_console.print(f"loading run {run.run_id} ({run.require_spec().model_name}, {run.require_spec().method})")
    worker = open_model(run, with_base=args.base)
    err_console.print(f"[dim]the model runs in a worker process; {escape(worker.isolation.describe())}[/]")
    return worker


def cmd_generate(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise AegisError("the prompt is empty; give the question to ask in quotes")
    run = find_run(args.run, trained=True)
    with _load(run, args) as worker:
        _say(worker, [{"role": "user", "content": args.prompt}], args)
    return EXIT_OK


def cmd_chat_model(args: argparse.Namespace) -> int:
    run = find_run(args.run, trained=True)
    with _load(run, args) as worker:
        return _converse(worker, args)


def _converse(worker: ModelWorker, args: argparse.Namespace) -> int:
    """One conversation with one worker, until /exit or the end of the input."""
    err_console.print("type a message; /reset starts over, /exit (or Ctrl-D) ends")
    messages: list[dict[str, str]] = []
    while True:
        if sys.stdin.isatty():
            err_console.print("[bold cyan]you>[/] ", end="")
        line = sys.stdin.readline()
        if not line or line.strip() in EXIT_WORDS:
            return EXIT_OK
        text = line.strip()
        if not text:
            continue
        if text == "/reset":
            messages = []
            err_console.print("(conversation cleared)")
            continue
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": _say(worker, messages, args)})


def cmd_export(args: argparse.Namespace) -> int:
    run = find_run(args.run, trained=True)
    run.final_dir()  # a run without a model says so before anything is written
    if args.gguf:
        gguf_converter()  # and a missing converter before the export
    err_console.print(
        f"exporting run {run.run_id}" + (" (merging the adapter into the base weights)" if args.merge else "")
    )
    result = export_run(run, args.out, merge=args.merge, gguf=args.gguf, force=args.force)
    console.print(f"exported {result.kind} model of run {result.run_id} to [bold]{result.folder}[/]")
    if result.isolation is not None:
        err_console.print(f"[dim]the merge ran in a worker process; isolation: {result.isolation}[/]")
    console.print(f"base model: {result.base_model or '(local only, no Hub id)'}; files: {', '.join(result.files)}")
    if result.gguf:
        console.print(f"GGUF: {result.gguf}; Ollama: ollama create {result.run_id} -f {result.modelfile}")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    repo_id = check_repo_id(args.repo_id)
    run = find_run(args.run, trained=True)
    folder = default_export_dir(run, args.merge)
    if not (folder / "aegis_run.json").is_file():
        err_console.print(f"exporting run {run.run_id} first")
        folder = Path(export_run(run, folder, merge=args.merge).folder)
    err_console.print(f"uploading {folder} to {repo_id}")
    done = push_folder(folder, repo_id, private=not args.public, message=f"Aegis-ML run {run.run_id}")
    console.print(f"pushed {done.files} files to {done.url} (commit {done.commit or 'unknown'})")
    return EXIT_OK
