"""What cannot run here, played in tests: a paid GPU backend, and a model that ships hostile code of its own.

``PaidGpuStandIn`` takes Modal's place (its cloud cannot run here) as a third backend registered by the test:
it has the catalog's GPUs, bills their price, and runs the real rendered script on this CPU in the local
sandbox, so failures (out of memory under a limit) are real. That the job steps run it unchanged is the proof
that a new backend is one class.

``hostile_model`` builds a tiny model whose config maps to code in its folder (what a Hub model with custom
code does): at import and in ``forward`` it tries to read a file it was never given, write outside its folder
and connect to a socket on 127.0.0.1, and logs what happened where it can.
"""

from __future__ import annotations

import json
import shutil
import socket
import textwrap
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tools.core.catalog import get_gpu
from tools.core.isolation import Isolation, IsolationFacts, Placement
from tools.core.spec import CostEstimate, ExecutionResult, TrainingSpec
from tools.core.stop import StopCheck
from tools.inputs.local_models import resolve_model
from tools.inputs.model_config import load_model_config
from tools.plan.estimator import estimate
from tools.run.backend import Attempt, LocalBackend, ProgressFn
from tools.run.sandbox import local_isolation

SANDBOXED = IsolationFacts(kind=Isolation.BUBBLEWRAP, detail="test")


def shipped_estimate(spec: TrainingSpec, gpu: str | None = None, **inputs: Any) -> CostEstimate:
    """The estimator with the model's shipped config unless a test passes its own (a job's quote hands over both)."""
    inputs.setdefault("model_config", load_model_config(spec.model_name))
    return estimate(spec, gpu, **inputs)


def placed(estimate: CostEstimate, backend: str = "local", isolation: IsolationFacts = SANDBOXED) -> CostEstimate:
    """A pure estimate as the job step leaves it: placed on a backend that isolates (the gate refuses it otherwise)."""
    return estimate.model_copy(update={"placement": Placement(backend=backend, isolation=isolation)})


class PaidGpuStandIn:
    """A backend with every catalog GPU, billed at the catalog's price, that trains on this CPU."""

    device = "cpu"  # rendered for the machine that really runs it

    def __init__(self, name: str = "stand-in", memory_limit_mb: int | None = None):
        self.name = name
        self.memory_limit_mb = memory_limit_mb
        self.runs: list[str] = []

    def offers(self, gpu: str) -> bool:
        return gpu != "cpu"

    def status(self) -> tuple[bool, str]:
        return True, "a test stand-in for a GPU cloud"

    def isolation(self) -> IsolationFacts:
        return local_isolation()

    def price_usd_per_sec(self, spec: TrainingSpec) -> float:
        return get_gpu(spec.target_gpu).price_usd_per_sec * spec.num_gpus

    def default_timeout_s(self, estimated_seconds: float) -> float:
        return 600.0

    def run(self, attempt: Attempt, on_progress: ProgressFn | None, should_stop: StopCheck) -> ExecutionResult:
        self.runs.append(attempt.spec.spec_hash())
        limited = replace(attempt, memory_limit_mb=self.memory_limit_mb or attempt.memory_limit_mb)
        result = LocalBackend().run(limited, on_progress, should_stop)
        return result.model_copy(
            update={
                "executor": self.name,
                "gpu": attempt.spec.target_gpu,
                "actual_cost_usd": attempt.estimated_seconds * attempt.price_usd_per_s,
            }
        )


HOSTILE_CODE = """
import json, os, socket
from transformers import LlamaConfig, LlamaForCausalLM

SECRET, ESCAPED, PORT = {secret!r}, {escaped!r}, {port}


def attack(where):
    seen = {{}}
    try:
        seen["read"] = open(SECRET).read()
    except Exception as exc:
        seen["read"] = "failed: " + type(exc).__name__
    try:
        with open(ESCAPED, "a") as fh:
            fh.write(where)
        seen["write"] = "ok"
    except Exception as exc:
        seen["write"] = "failed: " + type(exc).__name__
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        seen["connect"] = "ok"
    except Exception as exc:
        seen["connect"] = "failed: " + type(exc).__name__
    seen["home"] = os.path.expanduser("~")
    try:
        with open("attack.log", "a") as fh:
            fh.write(json.dumps({{where: seen}}) + "\\n")
    except Exception:
        pass


attack("import")


class HostileConfig(LlamaConfig):
    pass


class HostileModel(LlamaForCausalLM):
    config_class = HostileConfig
    attacked = False

    def forward(self, *args, **kwargs):
        if not HostileModel.attacked:
            HostileModel.attacked = True
            attack("forward")
        return super().forward(*args, **kwargs)
"""


@dataclass
class Listener:
    """A socket listening on 127.0.0.1 that counts who connects."""

    sock: socket.socket
    connections: int = 0
    stopped: bool = False

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


def listen() -> Listener:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    listener = Listener(sock)
    threading.Thread(target=listener.serve, daemon=True).start()
    return listener


@dataclass(frozen=True)
class Hostile:
    folder: Path
    secret: Path
    escaped: Path


def hostile_model(root: Path, port: int) -> Hostile:
    """The tiny local model, copied with a config that maps to its own code (hostile.py) beside it."""
    folder = root / "hostile-model"
    shutil.copytree(resolve_model("local:tiny-llama").path, folder)
    secret = root / "secret-token"
    secret.write_text("hf_SECRET_TOKEN_123", encoding="utf-8")
    escaped = root / "escaped"
    code = HOSTILE_CODE.format(secret=str(secret), escaped=str(escaped), port=port)
    (folder / "hostile.py").write_text(textwrap.dedent(code), encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "hostile.HostileConfig", "AutoModelForCausalLM": "hostile.HostileModel"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return Hostile(folder=folder, secret=secret, escaped=escaped)


def attack_log(folder: Path) -> list[dict]:
    """What the hostile code saw, from every attack.log under a folder (where the sandbox let it write)."""
    return [json.loads(line) for path in sorted(folder.rglob("attack.log")) for line in path.read_text().splitlines()]
