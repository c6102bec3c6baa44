"""One quote: `aegis estimate`, the chat's estimate, `aegis train`'s approval and the report show the same numbers
under the same hash; the data is read once per quote; what a person was shown is what the record holds."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from tools.core.spec import BudgetPolicy, parse_spec
from tools.job.approval import pending_request
from tools.job.pipeline import run_pipeline
from tools.job.state import new_job
from tools.policy.store import default_store_path
from tools.report.approval import ApprovalRequest

ROOT = Path(__file__).resolve().parents[2]
REQUEST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 2 steps on {gpu}"


def _runs() -> list[Path]:
    return sorted(p.parent for p in Path(os.environ["AEGIS_RUNS_DIR"]).glob("*/events.jsonl"))


def _chat_quote(capsys: pytest.CaptureFixture[str], gpu: str, *flags: str) -> tuple[dict, Path]:
    """Ask the agent; return the quote its estimate event recorded, and the spec it estimated as a file."""
    main(["run", REQUEST.format(gpu=gpu), *flags])
    capsys.readouterr()
    run = _runs()[-1]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    quote = next(
        e["data"]["quote"] for e in reversed(events) if e["phase"] == "estimate" and e["status"] == "completed"
    )
    spec_file = run.parent.parent / f"spec-{gpu}.yaml"
    spec_file.write_text(yaml.safe_dump(json.loads((run / "spec.json").read_text())))
    return quote, spec_file


def _estimate_quote(capsys: pytest.CaptureFixture[str], spec_file: Path) -> dict:
    assert main(["estimate", str(spec_file), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _train_request(capsys: pytest.CaptureFixture[str], spec_file: Path) -> tuple[ApprovalRequest, str]:
    """`aegis train` with a ceiling of $0: asked, then cancelled. Returns the request on record and the report."""
    before = set(_runs())
    main(["train", str(spec_file), "--approve-up-to", "0"])
    capsys.readouterr()
    (run,) = set(_runs()) - before
    with sqlite3.connect(default_store_path()) as db:
        payloads = [row[0] for row in db.execute("SELECT payload FROM requests WHERE job_id = ?", (run.name,))]
    assert len(payloads) == 1
    return ApprovalRequest.model_validate_json(payloads[0]), (run / "REPORT.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gpu", "env"),
    [
        ("a10g", {"AEGIS_SOFT_THRESHOLD_USD": "0"}),  # a priced GPU (the stand-in cloud): a person is asked
        ("cpu", {"AEGIS_LOCAL_PRICE_USD_PER_HOUR": "0.5", "AEGIS_SOFT_THRESHOLD_USD": "0"}),  # a priced CPU, modelled
    ],
)
def test_estimate_chat_approval_and_report_show_one_quote(gpu, env, gpu_cloud, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    chat, spec_file = _chat_quote(capsys, gpu)
    cli = _estimate_quote(capsys, spec_file)
    request, report = _train_request(capsys, spec_file)

    assert cli["quote_hash"] == chat["quote_hash"] == request.quote_hash
    assert f"Quote `{cli['quote_hash']}`" in report
    figures = ("estimated_cost_usd", "estimated_duration_min", "estimated_vram_gb")
    assert [cli["estimate"][f] for f in figures] == [chat["estimate"][f] for f in figures]
    assert [cli["estimate"][f] for f in figures] == [getattr(request, f) for f in figures]
    worst = cli["worst_case"]
    assert request.worst_case_usd == worst["worst_case_usd"] and request.timeout_s == cli["cap"]["timeout_s"]
    assert cli["estimate"]["estimated_cost_usd"] > 0


@pytest.mark.slow
def test_a_free_cpu_run_is_quoted_the_same_measured_way_by_the_chat_and_the_estimate(capsys):
    chat, spec_file = _chat_quote(capsys, "cpu", "--yes")
    cli = _estimate_quote(capsys, spec_file)
    assert cli["quote_hash"] == chat["quote_hash"]
    assert cli["estimate"]["cost_breakdown"]["time_source"].startswith("measured")


def test_the_data_is_read_once_per_quote(gpu_cloud, tmp_path, monkeypatch):
    """Estimate, pre-flight, gate, the worst case and the optimizer at the approval, the record: one read of the
    data file (the audit hook sees every open of it in this process)."""
    data = tmp_path / "data.jsonl"
    data.write_text((ROOT / "data/sample.jsonl").read_text())
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and args and str(args[0]) == str(data):
            opened.append(event)

    sys.addaudithook(audit)
    spec = parse_spec(
        {"model_name": "local:tiny-llama", "dataset_path": str(data), "target_gpu": "a10g", "max_steps": 2}
    )
    shown: list[ApprovalRequest] = []

    def person(job):
        shown.append(pending_request(job))
        return "cancel", "person:test"

    job = run_pipeline(new_job(BudgetPolicy(soft_threshold_usd=0)), spec, ask=person)
    assert job.status == "cancelled" and len(shown) == 1
    assert len(opened) == 1, opened
    assert shown[0].quote_hash == job.quote.quote_hash and shown[0].worst_case_usd is not None
