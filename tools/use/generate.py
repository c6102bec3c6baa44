"""Talk to a trained model: a run's fine-tuned model (adapter on its base, or a full model) answers a chat.

The model is loaded and run in a sandboxed worker (tools.use.model_worker, started by tools.run.sandbox), never
in this process, so a model that ships its own code (trust_remote_code) or a compromised package runs without
the person's files, HOME or network. One worker serves a whole conversation: the conversation goes in as a JSON
line, the tokens come back as JSON lines as they are generated, and the base model's answer can be asked for
beside the tuned one (the adapter disabled, or the base loaded once more for a full fine-tune). Greedy by
default, so the same question gets the same answer.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pydantic import ValidationError

from tools.core.errors import AegisError
from tools.core.isolation import IsolationFacts
from tools.evals.sandboxed import model_folder, worker_command, worker_failure
from tools.inputs.local_models import resolve_model
from tools.run.local import kill_group
from tools.run.sandbox import Contained, Mounts, paths_of, start_contained
from tools.use.protocol import LOG_FILE, Answer, GenerationSettings, LoadRequest, TokenFn, TurnRequest, WorkerLine
from tools.use.runs import RunRecord

CLOSE_GRACE_S = 5.0


class ModelWorker:
    """A run's model, loaded in a sandboxed worker that answers one turn at a time; close it (or use ``with``)."""

    def __init__(self, contained: Contained, scratch: tempfile.TemporaryDirectory[str]):
        self.contained = contained
        self.scratch = scratch
        self._said: list[str] = []  # lines on its stdout that are not the protocol (bubblewrap's, before it ran)

    @property
    def isolation(self) -> IsolationFacts:
        return self.contained.isolation

    def wait_ready(self) -> None:
        """Until the model is loaded; an AegisError with the worker's reason when it could not be."""
        while self._receive().type != "ready":
            pass

    def answer(
        self,
        messages: list[dict[str, str]],
        settings: GenerationSettings | None = None,
        *,
        on_token: TokenFn | None = None,
        with_base: bool = False,
        on_base_token: TokenFn | None = None,
    ) -> Answer:
        """The tuned model's reply (streamed), and the base model's reply to the same conversation when asked."""
        turn = TurnRequest(messages=messages, settings=settings or GenerationSettings(), with_base=with_base)
        self._send(turn)
        while True:
            line = self._receive()
            if line.type == "token":
                stream = on_base_token if line.model == "base" else on_token
                if stream is not None and line.text:
                    stream(line.text)
            elif line.type == "answer" and line.answer is not None:
                return line.answer
            elif line.type == "error":
                raise AegisError(line.text)

    def _send(self, turn: TurnRequest) -> None:
        stdin = self.contained.proc.stdin
        assert stdin is not None  # started with a pipe
        try:
            stdin.write(turn.model_dump_json().encode("utf-8") + b"\n")
            stdin.flush()
        except BrokenPipeError:
            raise self._failure() from None

    def _receive(self) -> WorkerLine:
        stdout = self.contained.proc.stdout
        assert stdout is not None  # started with a pipe
        while True:
            raw = stdout.readline()
            if not raw:
                raise self._failure()
            try:
                return WorkerLine.model_validate_json(raw)
            except ValidationError:
                self._said.append(raw.decode("utf-8", errors="replace"))

    def _failure(self) -> AegisError:
        """The worker ended (or closed its stdout): why, from its log."""
        proc = self.contained.proc
        try:
            proc.wait(timeout=CLOSE_GRACE_S)
        except subprocess.TimeoutExpired:
            kill_group(proc)
        log = Path(self.scratch.name) / LOG_FILE
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        return worker_failure("the model worker", "".join(self._said) + text, proc.returncode)

    def close(self) -> None:
        """End the worker (its stdin closed, it exits; or its group is killed) and remove its folder."""
        proc = self.contained.proc
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=CLOSE_GRACE_S)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            pass
        finally:
            kill_group(proc)
            if proc.stdout is not None:
                proc.stdout.close()
            self.scratch.cleanup()

    def __enter__(self) -> ModelWorker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_model(run: RunRecord, *, with_base: bool = False) -> ModelWorker:
    """A sandboxed worker with the run's model loaded (and a full fine-tune's base too, with ``with_base``).

    It sees the trained model and the base model read-only and writes only its own temporary folder. Raises
    IsolationRefused, with nothing started, where the model's own code must run isolated and cannot be.
    """
    spec = run.require_spec()
    request = LoadRequest(
        final_dir=str(run.final_dir().resolve()),  # the sandbox binds real folders, not the links to them
        base_path=model_folder(resolve_model(spec.model_name).path),
        trust_remote_code=spec.trust_remote_code,
        with_base=with_base,
    )
    scratch = tempfile.TemporaryDirectory(prefix="aegis-model-")
    folder = Path(scratch.name).resolve()
    mounts = Mounts(
        read_only=paths_of([request.final_dir, request.base_path]),
        writable=(folder,),
        remote_code=spec.trust_remote_code,
    )
    cmd = worker_command("tools.use.model_worker", "chat", request.model_dump_json())
    try:
        contained = start_contained(cmd, mounts, cwd=folder, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    except BaseException:
        scratch.cleanup()
        raise
    worker = ModelWorker(contained, scratch)
    try:
        worker.wait_ready()
    except BaseException:
        worker.close()
        raise
    return worker
