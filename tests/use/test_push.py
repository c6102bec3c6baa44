"""`aegis push RUN REPO`: huggingface_hub uploads the export to a Hub stand-in on 127.0.0.1; the token never shows."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.http_stubs import http_server

TOKEN = "hf_" + "StandInTokenThatMustNeverBeShown42"


class FakeHub:
    """The few Hub API routes an upload of a folder uses: create the repo, check the card, pre-upload, commit."""

    def __init__(self, refuse_with: int | None = None):
        self.refuse_with = refuse_with
        self.files: dict[str, bytes] = {}
        self.created: list[dict] = []
        self.base = ""  # its own address, once it serves: the URLs it answers with point at itself

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, dict | None]:
        if self.refuse_with is not None:
            return self.refuse_with, {"error": f"refused with {self.refuse_with}"}
        if path == "/api/repos/create":
            self.created.append(json.loads(body))
            return 200, {"url": f"{self.base}/me/support-bot", "name": "me/support-bot"}
        if path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return 200, {"files": modes}
        if "/commit/" in path:
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return 200, {"commitUrl": f"{self.base}/me/support-bot/commit/abc123", "commitOid": "a" * 40}
        return 404, {"error": f"no route {method} {path}"}


@pytest.fixture
def hub_env(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def _everything_written(*roots: Path) -> bytes:
    return b"".join(p.read_bytes() for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


def test_push_uploads_the_export_and_never_shows_the_token(run_id, tmp_path, capsys, monkeypatch, hub_env):
    hub = FakeHub()
    with http_server(hub) as (url, seen):
        hub.base = url
        monkeypatch.setenv("AEGIS_HUB_ENDPOINT", url)
        assert main(["push", run_id, "me/support-bot"]) == 0
    export = tmp_path / "runs" / run_id / "export"
    assert set(hub.files) == {str(p.relative_to(export)) for p in export.rglob("*") if p.is_file()}
    assert hub.files["README.md"] == (export / "README.md").read_bytes()
    assert "adapter_model.safetensors" in hub.files and hub.created[0]["visibility"] == "private"
    auth = [{k.lower(): v for k, v in headers.items()}.get("authorization") for _, _, headers, _ in seen]
    assert auth and all(a == f"Bearer {TOKEN}" for a in auth)
    captured = capsys.readouterr()
    assert "pushed" in captured.out and TOKEN not in captured.out + captured.err
    assert TOKEN.encode() not in _everything_written(tmp_path / "runs", tmp_path / "aegis-home")


def test_a_refused_push_says_why_without_the_token(run_id, capsys, monkeypatch, hub_env):
    with http_server(FakeHub(refuse_with=401)) as (url, _seen):
        monkeypatch.setenv("AEGIS_HUB_ENDPOINT", url)
        assert main(["push", run_id, "me/support-bot"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "write access" in err and TOKEN not in err and "Traceback" not in err


def test_push_without_a_token_says_how_to_get_one(run_id, capsys, monkeypatch, tmp_path, hub_env):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login either
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "tokens"))
    assert main(["push", run_id, "me/support-bot"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err


def test_an_unreachable_hub_is_one_line(run_id, capsys, monkeypatch, hub_env):
    from tests.ui_server import free_port

    monkeypatch.setenv("AEGIS_HUB_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert main(["push", run_id, "me/support-bot"]) == 1
    err = capsys.readouterr().err
    assert "the upload to the Hub failed" in err and TOKEN not in err and "Traceback" not in err
