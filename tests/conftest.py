"""Point all state at a temp folder; keep converted models in the shared cache so they are built once."""

from __future__ import annotations

import os

import pytest

from tests.stand_ins import PaidGpuStandIn, listen
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
POLICY_VARS = ("AEGIS_MAX_BUDGET_USD", "AEGIS_SOFT_THRESHOLD_USD", "AEGIS_ALLOW_AUTO_APPROVE", "AEGIS_BUDGET_FILE")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    monkeypatch.setenv(
        "AEGIS_MODEL_CACHE", os.environ.get("AEGIS_MODEL_CACHE", os.path.expanduser("~/.cache/aegis/models"))
    )
    for var in SECRET_VARS + POLICY_VARS:
        monkeypatch.delenv(var, raising=False)
    yield


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
