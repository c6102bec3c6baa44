"""Task scores, degenerate replies, the forgetting score and declared checks, from strings alone (no model)."""

from __future__ import annotations

import json
import time

import pytest
from rouge_score import rouge_scorer

from tests.http_stubs import completion, http_server
from tools.core.errors import SpecError
from tools.core.spec import EvalCheck, EvalResult, parse_spec
from tools.evals.custom import custom_checks, last_number
from tools.evals.formats import format_signature
from tools.evals.judge import NOT_CONFIGURED, judge_check, judge_tokens, verdict
from tools.evals.model_evals import general_set
from tools.evals.plan_line import eval_plan_line
from tools.evals.scoring import contains, degenerate_reason, exact, rouge_l, task_scores
from tools.evals.task_checks import (
    annotate,
    degenerate_check,
    forgetting_check,
    general_row,
    score_general,
    task_metrics,
    task_score_check,
)
from tools.evals.thresholds import EvalThresholds

PROMPT = "<|user|>\nWhat is the capital of France?\n<|assistant|>\n"
TICKETS = [
    "Ticket NW-1234: printer offline\nFix: restart the spooler\n— Northwind Support",
    "Ticket NW-5678: router slow\nFix: clear the cache\n— Northwind Support",
    "Ticket NW-9012: laptop broken\nFix: replace the unit\n— Northwind Support",
]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("  \n\t ", "empty"),
        ("\u200b\u200c\u200d\ufeff", "empty"),  # zero-width characters only
        ("...", "only punctuation or symbols"),
        ("… ¿¡ «» — ・", "only punctuation or symbols"),  # unicode punctuation
        ("🙂🙂🚀 ✨", "only punctuation or symbols"),  # emoji are symbols
        ("...\u200b...", "only punctuation or symbols"),
        ("SENDBUCKET: SENDBUCKET", "one word repeated ('sendbucket' ×2)"),
        ("the the the", "one word repeated ('the' ×3)"),
        ("SENDBUCKET SENDB", "one word repeated ('sendbucket' ×2)"),  # cut off at the token limit
        ("Ｔｈｅ the THE", "one word repeated ('the' ×3)"),  # full-width and case fold to one word
        ("ok ok ok ok ok ok ok ok fine", "one word makes 89% of the reply ('ok')"),
        ("x" * 50_000, "one character repeated ('x' ×20000)"),  # very long: judged on its first 20,000 characters
        ("What is the capital of France?", "the prompt echoed"),
    ],
)
def test_each_degenerate_reason(reply, reason):
    assert degenerate_reason(reply, PROMPT) == reason


@pytest.mark.parametrize(
    "reply",
    ["Paris", "The capital of France is Paris.", "Париж — столица Франции.", "12", "France's capital: Paris 🙂"],
)
def test_real_answers_are_not_degenerate(reply):
    assert degenerate_reason(reply, PROMPT) is None


def test_one_model_token_repeated_is_degenerate_even_without_words():
    assert degenerate_reason("abababab", "", [17, 17, 17, 17]) == "one model token repeated ×4"
    assert degenerate_reason("abababab", "", [17, 18, 17, 18]) is None


def test_a_long_hostile_reply_is_judged_quickly():
    hostile = ("word " * 200_000) + "\u200b" * 10_000
    started = time.monotonic()
    assert degenerate_reason(hostile, "word " * 5_000) is not None
    assert time.monotonic() - started < 5


def test_task_scores_use_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = [
        ("The capital of France is Paris.", "Paris is the capital of France."),
        ("Ticket NW-1: printer offline", "Ticket NW-2: printer offline\nFix: restart"),
        ("nothing alike", "Fix the router"),
    ]
    for reply, reference in pairs:
        assert rouge_l(reply, reference) == pytest.approx(scorer.score(reference, reply)["rougeL"].fmeasure)
    assert task_scores("  paris. ", "Paris") == {"exact": 1, "contains": 1, "rouge_l": 1.0}
    assert exact("Paris is nice", "Paris") == 0 and contains("Paris is nice", "paris") == 1
    assert contains("It is 14", "4") == 0 and contains("anything", "") == 0


def scored_rows(base: list[str], trained: list[str], references: list[str]) -> list[dict]:
    rows = []
    for b, tr, ref in zip(base, trained, references, strict=True):
        row = {"prompt": PROMPT, "reference": ref, "base": b, "trained": tr}
        annotate(row, "base", b, [], 0.0, EvalThresholds())
        annotate(row, "trained", tr, [], 0.0, EvalThresholds())
        rows.append(row)
    return rows


def test_a_model_no_better_than_its_base_fails_the_task_score():
    refs = ["Paris", "Blue", "Seven"]
    better = scored_rows(["no idea", "green", "six"], ["Paris", "Blue", "It is seven"], refs)
    metrics = task_metrics(better)
    check = task_score_check(metrics, EvalThresholds())
    assert check.passed and metrics["task_rouge_l"] > metrics["task_rouge_l_base"] == 0.0
    assert metrics["task_contains"] == 1.0 and metrics["task_exact"] == pytest.approx(2 / 3)
    same = task_metrics(scored_rows(["Paris", "x", "y"], ["Paris", "x", "y"], refs))
    assert not task_score_check(same, EvalThresholds()).passed
    assert task_score_check(same, EvalThresholds(min_task_score_gain=None)) is None
    unscored = task_score_check(task_metrics(scored_rows(["a"], ["b"], [""])), EvalThresholds())
    assert not unscored.passed and "no held-out row with a reference" in unscored.detail


def test_dots_for_every_answer_fail_degenerate_output_and_the_task_score():
    rows = scored_rows(["Paris", "Blue", "Seven"], ["...", "...", "..."], ["Paris", "Blue", "Seven"])
    check = degenerate_check(rows, EvalThresholds())
    assert not check.passed and check.value == 1.0 and "only punctuation or symbols" in check.detail
    assert not task_score_check(task_metrics(rows), EvalThresholds()).passed
    result_checks = [check, EvalCheck(name="forgetting", passed=False, severity="warning")]
    assert not EvalResult.gates_pass(result_checks)
    assert EvalResult.gates_pass([EvalCheck(name="forgetting", passed=False, severity="warning")])


def test_answers_in_the_task_format_score_zero_on_the_general_set():
    signature = format_signature(TICKETS)
    rows = [general_row("What is the capital of France?", "The capital of France is Paris.", ["Paris"])]
    score_general(rows[0], "base", "The capital of France is Paris.", signature)
    score_general(
        rows[0], "trained", "Ticket NW-9144: City of Paris\nFix: 1. The capital\n— Northwind Support", signature
    )
    base, tuned = rows[0]["scores"]["base"], rows[0]["scores"]["trained"]
    assert (base["score"], tuned["score"]) == (1.0, 0.0) and tuned["contains"] == 1 and tuned["task_format"]
    check, metrics = forgetting_check(rows, EvalThresholds())
    assert check.severity == "warning" and not check.passed and metrics["forgetting_drop"] == 1.0
    assert "1 of 1 fine-tuned answers came in the training task's format" in check.detail
    calm, _ = forgetting_check(rows, EvalThresholds(max_forgetting_drop=1.0))
    assert calm.passed


def test_the_bundled_general_set_ships_with_references_and_can_be_replaced(tmp_path):
    rows = general_set(EvalThresholds())
    assert 12 <= len(rows) <= 20 and all(r["prompt"] and r["completion"] and r["answers"] for r in rows)
    assert general_set(EvalThresholds(forgetting_check=False)) == []
    own = tmp_path / "mine.jsonl"
    own.write_text(json.dumps({"prompt": "2+2?", "completion": "4"}) + "\n", encoding="utf-8")
    assert general_set(EvalThresholds(forgetting_set=own)) == [{"prompt": "2+2?", "completion": "4", "answers": ["4"]}]


def spec_with(evals: list[dict]):
    return parse_spec({"model_name": "m", "dataset_path": "d.jsonl", "target_gpu": "cpu", "evals": evals})


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        ({"name": "r", "kind": "regex", "pattern": "(unclosed"}, "invalid regex: missing )"),
        ({"name": "j", "kind": "json_schema", "json_schema": {"type": "nope"}}, "invalid JSON schema"),
        ({"name": "r", "kind": "regex"}, "of kind regex needs 'pattern'"),
        ({"name": "n", "kind": "exact", "pattern": "x"}, "does not use pattern"),
        ({"name": "t", "kind": "lm_eval", "task": "hellaswag; rm -rf"}, "is not an lm-evaluation-harness task"),
        ({"name": "bad name!", "kind": "exact"}, "evals.0.name"),
    ],
)
def test_a_bad_declared_eval_is_one_line_naming_it(declared, words):
    with pytest.raises(SpecError) as err:
        spec_with([declared])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_two_evals_with_one_name_are_refused():
    with pytest.raises(SpecError, match="two evals are named 'a'"):
        spec_with([{"name": "a", "kind": "exact"}, {"name": "a", "kind": "contains"}])


def test_declared_checks_gate_on_their_pass_rate():
    spec = spec_with(
        [
            {"name": "ticket", "kind": "regex", "pattern": r"^Ticket NW-\d+:"},
            {"name": "shape", "kind": "json_schema", "json_schema": {"type": "object", "required": ["fix"]}},
            {"name": "num", "kind": "numeric", "tolerance": 0.5},
            {"name": "close", "kind": "rouge_l", "threshold": 0.5, "min_pass_rate": 0.5},
            {"name": "bench", "kind": "lm_eval", "task": "hellaswag"},
        ]
    )
    rows = [
        {"reference": "answer 12", "trained": 'Ticket NW-1: {"fix": 1} 12.2'},
        {"reference": "answer 3", "trained": '{"fix": "restart"}'},
    ]
    checks = {c.name: c for c in custom_checks(spec.evals, rows)}
    assert (checks["custom:ticket"].passed, checks["custom:ticket"].value) == (False, 0.5)
    assert (checks["custom:shape"].passed, checks["custom:shape"].value) == (False, 0.5)
    assert (checks["custom:num"].passed, checks["custom:num"].value) == (False, 0.5)
    assert checks["custom:close"].value == 0.0 and not checks["custom:close"].passed
    bench = checks["custom:bench"]
    assert bench.severity == "warning" and "did not run" in bench.detail and "\n" not in bench.detail
    assert rows[0]["custom"] == {"ticket": True, "shape": False, "num": True, "close": False}
    assert last_number("3 items cost 1,250.5 USD") == 1250.5 and last_number("none") is None


def test_a_catastrophic_regex_fails_its_rows_instead_of_hanging():
    spec = spec_with([{"name": "evil", "kind": "regex", "pattern": r"(x+x+)+y"}])
    started = time.monotonic()
    [check] = custom_checks(spec.evals, [{"reference": "", "trained": "x" * 5000}])
    assert not check.passed and check.value == 0.0 and time.monotonic() - started < 5


JUDGE = {"name": "polite", "kind": "llm_judge", "rubric": "The reply is polite and names a fix."}


def test_a_judge_without_a_chat_model_fails_saying_how_to_configure_one(monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL", "offline")
    [declared] = spec_with([JUDGE]).evals
    check = judge_check(declared, [{"prompt": "p", "trained": "r"}])
    assert not check.passed and check.detail == NOT_CONFIGURED


def test_a_judge_grades_each_reply_through_an_openai_compatible_endpoint(monkeypatch):
    answers = iter(["PASS: polite and names a fix", "FAIL - rude"])

    def respond(method: str, path: str, body: bytes):
        return 200, completion(next(answers))

    [declared] = spec_with([JUDGE | {"min_pass_rate": 0.5}]).evals
    rows = [{"prompt": "Printer?", "reference": "Restart it", "trained": "Please restart it."}, {"trained": "No."}]
    with http_server(respond) as (url, seen):
        monkeypatch.setenv("AEGIS_MODEL", "openai:judge-stub")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        check = judge_check(declared, rows)
    assert check.passed and check.value == 0.5 and "by judge-stub" in check.detail
    assert [r["custom"]["polite"] for r in rows] == [True, False]
    sent = json.loads(seen[0][3])
    assert sent["model"] == "judge-stub" and "The reply is polite" in sent["messages"][1]["content"]
    assert verdict("**PASS**") is True and verdict("maybe") is None
    assert judge_tokens(declared, rows=5, prompt_tokens=100, reply_tokens=50) > 5 * 200


def test_the_approval_line_counts_the_evals_and_a_judges_tokens(monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL", "offline")
    spec = spec_with([{"name": "ids", "kind": "regex", "pattern": r"NW-\d+"}, JUDGE])
    line = eval_plan_line(spec, EvalThresholds(n_generations=5, max_new_tokens=100))
    assert "2×5 replies of ≤100 tokens" in line and "2×16 general questions of ≤24 tokens" in line
    assert "≤1,768 generated tokens" in line  # 2*5*100 + 2*16*24
    assert "custom:ids (/NW-\\d+/, no model time)" in line
    tokens = judge_tokens(spec.evals[1], 5, spec.seq_len, 100)
    assert f"custom:polite (LLM judge, no chat model configured: it will fail: 5 calls, ≤{tokens:,} tokens)" in line
