"""Point all state at a temp folder; keep converted models in the shared cache so they are built once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_server import MISSING, PostgresServer, postgres_bin
from tests.stand_ins import PaidGpuStandIn, listen
from tools.core.database import close_idle
from tools.run.backend import register, unregister

SECRET_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "MODAL_TOKEN_ID",
    "MODAL_TOKEN_SECRET",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
    "LANGSMITH_ENDPOINT",
)
TOY_MODEL_EVALS = Path(__file__).with_name("toy_model_evals.yaml")
POLICY_VARS = ("AEGIS_MAX_BUDGET_USD", "AEGIS_SOFT_THRESHOLD_USD", "AEGIS_ALLOW_AUTO_APPROVE", "AEGIS_BUDGET_FILE")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Also for module- and session-scoped fixtures, which run before the autouse one below (why: the file's comment).
os.environ["AEGIS_EVAL_CONFIG"] = str(TOY_MODEL_EVALS)


@pytest.fixture(scope="session")
def preflight_cache(tmp_path_factory):
    """Smoke-run results are keyed by script, spec, data and model contents, so tests may share them."""
    return tmp_path_factory.mktemp("preflight-cache")


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch, preflight_cache):
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(preflight_cache))
    monkeypatch.setenv("AEGIS_HOME", str(tmp_path / "aegis-home"))
    monkeypatch.setenv("AEGIS_RUNS_DIR", str(tmp_path / "runs"))
    # Creating an MLflow store costs seconds per run; tests of tracking turn it on themselves (tests/use).
    monkeypatch.setenv("AEGIS_TRACKING", "off")
    monkeypatch.setenv("AEGIS_EVAL_CONFIG", str(TOY_MODEL_EVALS))  # why: the file's comment
    monkeypatch.setenv(
        "AEGIS_MODEL_CACHE", os.environ.get("AEGIS_MODEL_CACHE", os.path.expanduser("~/.cache/aegis/models"))
    )
    for var in (*SECRET_VARS, *POLICY_VARS, "AEGIS_DATABASE_URL", "AEGIS_SPEND_DB"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def real_eval_gates(monkeypatch):
    """The operator's default eval thresholds, reply-quality gates included (not the toy models' file)."""
    monkeypatch.delenv("AEGIS_EVAL_CONFIG", raising=False)


@pytest.fixture
def listener():
    """A socket on 127.0.0.1 that counts who connects: what a sandboxed process must never reach."""
    sock = listen()
    yield sock
    sock.close()


@pytest.fixture
def gpu_cloud():
    """A GPU cloud for tests that train a GPU target: Modal's cloud cannot run here (tests/stand_ins.py)."""
    backend = PaidGpuStandIn()
    register(backend)
    yield backend
    unregister(backend.name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole session (tests/pg_server.py). Where it is not installed, every test that
    needs it fails saying so: CI installs it (make postgres), so a missing server is never a silent skip."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail(MISSING, pytrace=False)
    try:
        server = PostgresServer(bindir).start()
    except RuntimeError as exc:
        pytest.fail(f"the test PostgreSQL could not start: {exc}", pytrace=False)
    yield server
    close_idle()
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database of the session's server, for this test alone."""
    url = postgres_server.new_database()
    yield url
    close_idle(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a spend store lives: a SQLite file, or a PostgreSQL database (the same tests run on each)."""
    if request.param == "sqlite":
        return tmp_path / "spend.sqlite"
    return request.getfixturevalue("postgres_url")
