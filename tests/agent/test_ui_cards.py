"""The chat's cards and runs page without a browser: the spec once, money that adds up, a short result card,
and /runs paged, filtered and compared (run folders written as a finished run leaves them)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.ui import app as chainlit_app
from agent.ui.cards import approval_card, compact_spec_message, result_card, summed
from agent.ui.landing import spend_label
from agent.ui.runs_page import COMPARE_ACTION, PAGE_ACTION, parse_compare_command, parse_runs_command
from agent.ui.wording import watermark_text, with_watermark
from tests.agent.test_ui_continue import Tab, press
from tools.core.spec import EvalCheck, EvalResult, ExecutionResult, RunEvent, TrainingSpec
from tools.core.status import Decision
from tools.job.state import JobState
from tools.report.approval import ApprovalRequest

SPEC = {"method": "lora", "model_name": "local:tiny-llama", "dataset_path": "data/sample.jsonl", "target_gpu": "a10g"}


def _request(**update: object) -> ApprovalRequest:
    base = {
        "run_id": "r1",
        "request_id": "req-1",
        "spec_hash": "abc",
        "quote_hash": "q1",
        "estimate_hash": "e1",
        "data_digest": "d1",
        "spec": SPEC,
        "estimated_cost_usd": 0.014029874807375615,
        "estimated_duration_min": 0.77,
        "estimated_vram_gb": 2.4,
        "fits": True,
        "gpu": "a10g",
        "backend": "modal",
        "spent_usd": 0.0,
        "soft_threshold_usd": 0.0001,
        "max_budget_usd": 5.0,
        "reason": "above the soft threshold",
        "attempts": [
            {
                "attempt": i,
                "rule": "r",
                "changes": {},
                "estimated_cost_usd": 0.014029874807375615,
                "estimated_minutes": 1,
            }
            for i in (1, 2, 3, 4)
        ],
        "worst_case_usd": 4 * 0.014029874807375615,
        "retries_budget_allows": 3,
        "timeout_s": 600.0,
        "max_attempt_cost_usd": 630 * 1.10 / 3600,
    }
    return ApprovalRequest.model_validate({**base, **update})


def _dollars(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\$([\d,]+\.\d+)", text)]


def test_the_intake_message_keeps_one_line_and_puts_the_spec_behind_the_link() -> None:
    text = (
        'I read your request as this training spec (run r1):\n```json\n{\n  "method": "lora"\n}\n```\n'
        "**From you:** method=lora\n**Defaults (not said; tell me to change any):** seed=42"
    )
    shown, hidden = compact_spec_message(text)
    assert shown == "I read your request as a training spec (run r1); every field is in the closed block below."
    assert hidden is not None and '"method": "lora"' in hidden and "**From you:** method=lora" in hidden
    assert compact_spec_message("no spec here") == ("no spec here", None)


def test_the_approval_card_shows_the_spec_once_and_its_money_adds_up() -> None:
    card = approval_card(_request(), "LoRA fine-tune local:tiny-llama on a10g")
    assert card.count("local:tiny-llama") == 2  # what you asked, and what Aegis chose: once each
    assert '"model_name"' not in card and "From you" not in card
    [worst] = [line for line in card.splitlines() if line.startswith("| Worst case")]
    *parts, total = _dollars(worst.split("(the budget")[0])
    assert len(parts) == 4 and abs(sum(parts) - total) < 1e-9
    [held] = [line for line in card.splitlines() if line.startswith("| Held")]
    hold, hourly = _dollars(held)[:2]
    assert hold >= 0.0140 and abs(hold - (600 + 30) * hourly / 3600) < 0.005
    assert "$0.00" not in worst + held


def test_a_hold_below_the_estimate_says_why() -> None:
    card = approval_card(_request(max_attempt_cost_usd=0.0))
    assert "$0.00: its 10-min time limit" in card and "below the estimate: modal prices its time at $0.00/h" in card


def test_summed_parts_add_up_to_the_shown_total() -> None:
    parts, total = summed([0.33333, 0.33333, 0.33334], 1.0)
    assert sum(float(p[1:]) for p in parts) == float(total[1:])
    assert summed([0.5, 0.6], 1.1) == (["$0.50", "$0.60"], "$1.10")


def _job(status: str, **update: object) -> JobState:
    return JobState.model_validate(
        {"run_id": "r1", "run_dir": "/nowhere", "status": status, "spec": TrainingSpec.model_validate(SPEC), **update}
    )


def test_a_cancelled_run_gets_one_line_and_a_trained_one_its_figures() -> None:
    cancelled = result_card(_job("cancelled", decided_by="person:chainlit"), 0.0)
    assert cancelled.count("\n") == 0 and "was not trained and nothing was spent" in cancelled
    attempt = ExecutionResult(status="succeeded", initial_eval_loss=2.5, final_eval_loss=1.25, duration_s=42.0)
    evals = EvalResult(
        passed=True,
        checks=[EvalCheck(name="forgetting", passed=False, severity="warning", detail="it forgot")],
        metrics={
            "task_rouge_l_base": 0.1,
            "task_rouge_l": 0.6,
            "forgetting_score_base": 0.5,
            "forgetting_score": 0.2,
            "eval_seconds": 9.0,
        },
    )
    card = result_card(_job("succeeded", attempts=[attempt], eval_result=evals), 0.0123)
    assert "| Held-out loss | 2.5000 → 1.2500 |" in card
    assert "| Task score (ROUGE-L, base → tuned) | 0.100 → 0.600 |" in card
    assert "0.500 → 0.200 · **warning: it forgot**" in card
    assert "$0.0123 · training 42 s + evals 9 s" in card and "full report is in the closed block" in card
    assert "Event Timeline" not in card


def test_the_footer_names_what_plans() -> None:
    assert "built-in rules (no language model)" in watermark_text("offline")
    assert "gpt-4o-mini" in watermark_text("openai:gpt-4o-mini")
    loaded = with_watermark(lambda _lang: {"chat": {"watermark": "LLMs can make mistakes."}}, "rules")
    assert loaded("en-US") == {"chat": {"watermark": "rules"}}


def test_runs_and_compare_commands_parse() -> None:
    q = parse_runs_command("/runs succeeded tiny")
    assert q is not None and q.outcome == "succeeded" and q.words == ["tiny"]
    assert parse_runs_command("past runs") is not None and parse_runs_command("/running") is None
    assert parse_compare_command("/compare a b") == ("a", "b")
    assert "two runs" in str(parse_compare_command("/compare a"))
    assert parse_compare_command("compare the last two") is None


def write_runs(runs: Path, count: int) -> list[str]:
    """Run folders as finished runs leave them (an event log and job.json), newest last, alternating outcomes."""
    ids = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        run_id = f"run-{i:02d}"
        folder = runs / run_id
        folder.mkdir(parents=True)
        event = RunEvent(timestamp=start + timedelta(minutes=i), phase="intake", status="completed", message="m")
        (folder / "events.jsonl").write_text(event.model_dump_json() + "\n")
        status = "cancelled" if i % 2 else "refused"
        job = {"run_id": run_id, "run_dir": str(folder), "status": status, "spec": SPEC}
        (folder / "job.json").write_text(json.dumps(job))
        ids.append(run_id)
    return ids


def test_runs_are_paged_filtered_and_two_are_compared() -> None:
    ids = write_runs(Path(os.environ["AEGIS_RUNS_DIR"]), 13)
    tab = Tab("tab-runs-page")

    async def browse() -> None:
        await chainlit_app.on_message(chainlit_app.cl.Message(content="/runs"))
        [next_page] = [a for a in tab.buttons(PAGE_ACTION) if a["label"] == "Next"]
        await chainlit_app.on_page(press(PAGE_ACTION, next_page["payload"]))
        await chainlit_app.on_message(chainlit_app.cl.Message(content="/runs cancelled"))
        first, second = tab.buttons(COMPARE_ACTION)[-6:][:2]  # the cancelled runs' page: run-11, then run-09
        await chainlit_app.on_compare(press(COMPARE_ACTION, first["payload"]))
        await chainlit_app.on_compare(press(COMPARE_ACTION, second["payload"]))
        await chainlit_app.on_compare(press(COMPARE_ACTION, {"run_id": "not-shown"}))

    asyncio.run(tab.run(browse))
    first_page, second_page, cancelled = [s for s in tab.said if s.startswith("**Past runs**")]
    assert "(1–10 of 13;" in first_page and f"`{ids[-1]}`" in first_page and f"`{ids[0]}`" not in first_page
    assert "(11–13 of 13;" in second_page and f"`{ids[0]}`" in second_page
    assert "(1–6 of 6, filtered by `cancelled`" in cancelled and "refused" not in cancelled.split("|---|")[-1]
    [comparison] = [s for s in tab.said if s.startswith("**Compare**")]
    assert f"`{ids[-2]}`" in comparison and f"`{ids[-4]}`" in comparison
    assert "That run was not listed in this chat" in tab.said[-1]


def test_the_approve_button_names_the_worst_case_as_the_card_writes_it() -> None:
    req = _request()
    label, _icon = spend_label(Decision.APPROVE, req)
    assert label == "Approve: spend $0.0140 (at most $0.05612 with retries)"
    assert "= **$0.05612**" in approval_card(req)


def test_the_card_shows_what_the_evals_will_cost() -> None:
    plan = "Evals after training, on this CPU: 8 held-out rows, 2 generations; judge: about 3,000 tokens."
    card = approval_card(_request(eval_plan=plan))
    assert card.count("Evals after training") == 1 and plan in card
