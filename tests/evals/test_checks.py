"""The eval checks as a person reads them, from measured numbers alone (no model): names, values, details."""

from __future__ import annotations

import pytest

from tools.core.spec import ExecutionResult
from tools.evals.checks import format_check, loss_checks, train_loss_ends
from tools.evals.formats import format_signature
from tools.evals.task_checks import degenerate_check
from tools.evals.thresholds import EvalThresholds

LEARNED = [(i, 3.0 - 0.1 * i) for i in range(20)]


def result(curve: list[tuple[int, float]], first: float | None = None, last: float | None = None) -> ExecutionResult:
    return ExecutionResult(status="succeeded", loss_curve=curve, initial_train_loss=first, final_train_loss=last)


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_a_learned_curve_passes_the_loss_checks_with_its_numbers():
    checks, start, end = loss_checks(result(LEARNED), 2.0, 1.5, EvalThresholds())
    assert [c.name for c in checks] == ["loss_improved", "heldout_loss_improved", "overfitting_gap"]
    assert all(c.passed for c in checks)
    assert (start, end) == pytest.approx((2.85, 1.25))
    named = by_name(checks)
    assert named["loss_improved"].value == round((start - end) / start, 4) and named["loss_improved"].threshold == 0.05
    assert named["loss_improved"].detail.startswith(f"train loss {start:.4f} → {end:.4f} (mean of first/last points)")
    assert (named["heldout_loss_improved"].value, named["heldout_loss_improved"].threshold) == (1.5, 2.0)
    assert named["overfitting_gap"].detail == f"held-out 1.5000 − train {end:.4f} = {1.5 - end:.4f} nats"


def test_without_a_curve_or_held_out_rows_every_loss_check_fails_and_says_why():
    checks, start, end = loss_checks(result([(1, 2.0)]), None, None, EvalThresholds(max_final_loss=1.0))
    named = by_name(checks)
    assert (start, end) == (None, None) and not any(c.passed for c in checks)
    assert "fewer than two train loss points" in named["loss_improved"].detail
    assert named["heldout_loss_improved"].detail == "no held-out reply tokens to measure (set eval_split > 0)"
    assert named["final_loss_bound"].detail == "no train loss recorded"
    assert named["overfitting_gap"].detail == "needs both a train loss and a held-out loss"


def test_short_curve_falls_back_to_the_first_and_last_loss():
    assert train_loss_ends(result([(1, 2.0)], first=2.0, last=1.0)) == (2.0, 1.0)
    assert train_loss_ends(result([])) == (None, None)


@pytest.mark.parametrize(("bound", "passed", "detail"), [(2.0, True, "within the bound"), (1.0, False, "above")])
def test_final_loss_bound_only_when_set(bound, passed, detail):
    flat = result([(i, 1.5) for i in range(10)])
    assert "final_loss_bound" not in by_name(loss_checks(flat, 2.0, 1.8, EvalThresholds())[0])
    check = by_name(loss_checks(flat, 2.0, 1.8, EvalThresholds(max_final_loss=bound))[0])["final_loss_bound"]
    assert (check.passed, check.value, check.threshold) == (passed, 1.5, bound) and detail in check.detail


def test_no_generations_fail_degenerate_output_and_skip_format():
    signature = format_signature(["Ticket 1: a\nThanks", "Ticket 2: b\nThanks"])
    check = degenerate_check([], EvalThresholds())
    assert not check.passed and "no held-out prompts" in check.detail
    assert format_check(signature, [], EvalThresholds()) == (None, {})


def test_format_rates_without_a_check_when_the_operator_sets_no_minimum():
    signature = format_signature(["Ticket 1: a\nThanks", "Ticket 2: b\nThanks"])
    rows = [{"trained": "Ticket 3: c\nThanks", "format_ok": True, "format_ok_base": False}]
    check, metrics = format_check(signature, rows, EvalThresholds(format_min_pass_rate=None))
    assert check is None and metrics == {"format_pass_rate_base": 0.0, "format_pass_rate": 1.0}
    check, _ = format_check(signature, rows, EvalThresholds())
    assert check is not None and check.passed and check.detail.endswith("fine-tuned 100%, base 0%")
