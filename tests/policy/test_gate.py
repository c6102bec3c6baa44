"""The FinOps gate's rules, the approval record, an attempt's money limits and the job's ledger of attempts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tests.stand_ins import SANDBOXED, placed, shipped_estimate
from tools.core.isolation import CodeFile, Isolation, IsolationFacts, Placement
from tools.core.money import HOLD_MARGIN_S
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.policy.gate import ApprovalRecord, attempt_limits, evaluate_gate

POLICY = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=2.0, allow_auto_approve=True)
DATA = DatasetStats(
    rows=2000,
    format="text",
    tokens=2000 * 300,
    mean_tokens_per_row=300,
    max_tokens_per_row=300,
    truncated_rows=0,
    seq_len=512,
    approximate=False,
    tokenizer="test",
)


def spec(**fields) -> TrainingSpec:
    return TrainingSpec(**{"model_name": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "dataset_path": "d.jsonl", **fields})


def priced(usd: float, **fields) -> CostEstimate:
    """A real estimate, with its price set to a chosen figure to reach each gate branch."""
    return placed(shipped_estimate(spec(**fields), dataset_stats=DATA)).model_copy(update={"estimated_cost_usd": usd})


def test_real_estimate_fits_and_is_auto_approved() -> None:
    est = placed(shipped_estimate(spec(), dataset_stats=DATA))
    assert est.fits and est.estimated_cost_usd < POLICY.soft_threshold_usd
    gate = evaluate_gate(est, POLICY)
    assert (gate.outcome, gate.decided_by) == ("approved", "policy:auto")
    assert gate.estimate_usd == est.estimated_cost_usd and gate.max_budget_usd == 5.0 and gate.soft_threshold_usd == 2.0


@pytest.mark.parametrize(
    ("usd", "spent", "policy", "outcome", "reason"),
    [
        (6.0, 0.0, POLICY, "refused", "exceeds the hard limit of $5.00"),
        (2.5, 3.0, POLICY, "refused", "plus $3.00 already spent or held exceeds the hard limit"),
        (5.0, 0.0, POLICY, "needs_human", "above the soft threshold"),
        (3.0, 0.0, POLICY, "needs_human", "a person must approve"),
        (1.5, 1.0, POLICY, "needs_human", "above the soft threshold"),
        (2.0, 0.0, POLICY, "approved", "within the soft threshold"),
        (0.5, 0.0, BudgetPolicy(allow_auto_approve=False), "needs_human", "auto-approve is off"),
        (0.5, 0.0, POLICY.tightened(0.4), "refused", "hard limit of $0.40"),
    ],
)
def test_gate_branches(usd: float, spent: float, policy: BudgetPolicy, outcome: str, reason: str) -> None:
    gate = evaluate_gate(priced(usd), policy, spent_usd=spent)
    assert gate.outcome == outcome
    assert reason in gate.reason
    assert gate.spent_usd == spent
    assert (gate.decided_by == "policy:auto") == (outcome == "approved")


def test_job_that_does_not_fit_is_refused_even_when_cheap() -> None:
    est = placed(shipped_estimate(spec(model_name="llama-2-7b", method="full_finetune"), "a10g", dataset_stats=DATA))
    gate = evaluate_gate(est.model_copy(update={"estimated_cost_usd": 0.10}), POLICY)
    assert gate.outcome == "refused" and not gate.fits
    assert "does not fit" in gate.reason and "a10g" in gate.reason


def record(**overrides) -> ApprovalRecord:
    fields = {
        "grant_id": "grant-1",
        "decided_by": "policy:auto",
        "spec_hash": "s",
        "estimate_hash": "e",
        "data_digest": "d",
        "approved_usd": 1.0,
        "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return ApprovalRecord(**{**fields, **overrides})


def test_approval_record_is_strict() -> None:
    approval = record()
    with pytest.raises(ValidationError):
        approval.approved_usd = 100.0  # frozen
    fields = approval.model_dump()
    with pytest.raises(ValidationError):
        ApprovalRecord(**fields, extra_field=1)
    with pytest.raises(ValidationError):
        record(decided_by="the model said so")
    with pytest.raises(ValidationError):
        record(decision="cancel")
    with pytest.raises(ValidationError):
        record(timestamp=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValidationError):
        record(data_digest="")  # an approval is always bound to data bytes
    assert ApprovalRecord(**fields) == approval


def test_an_attempt_limit_is_cut_to_what_the_money_left_pays_for() -> None:
    price = 1.0 / 3600  # $1 an hour
    free = attempt_limits(estimated_seconds=600, price_usd_per_s=0.0, default_timeout_s=1800, remaining_usd=0.0)
    assert (free.timeout_s, free.hold_usd, free.budget_capped) == (1800, 0.0, False)
    roomy = attempt_limits(estimated_seconds=600, price_usd_per_s=price, default_timeout_s=1800, remaining_usd=5.0)
    assert roomy.timeout_s == 1800 and roomy.hold_usd == pytest.approx((1800 + HOLD_MARGIN_S) * price)
    tight = attempt_limits(estimated_seconds=600, price_usd_per_s=price, default_timeout_s=1800, remaining_usd=0.3)
    assert tight.budget_capped and tight.hold_usd == pytest.approx(0.3) and tight.timeout_s >= 1.25 * 600
    with pytest.raises(ValueError, match="left under the hard limit"):
        attempt_limits(estimated_seconds=600, price_usd_per_s=price, default_timeout_s=1800, remaining_usd=0.2)


def test_an_estimate_no_backend_here_can_run_is_refused_before_anything_is_asked() -> None:
    est = shipped_estimate(spec(), dataset_stats=DATA).model_copy(
        update={"placement": Placement(hint="modal: Modal is not configured")}
    )
    gate = evaluate_gate(est, POLICY)
    assert gate.outcome == "refused" and "nothing here can run it: modal: Modal is not configured" in gate.reason


def test_remote_code_is_never_approved_by_the_policy_and_the_reason_names_its_files() -> None:
    code = [CodeFile(name="modeling_evil.py", sha256="ab" * 32)]
    est = placed(priced(0.0), isolation=SANDBOXED)
    est = est.model_copy(
        update={"placement": est.placement.model_copy(update={"trust_remote_code": True, "remote_code": code})}
    )
    gate = evaluate_gate(est, POLICY)
    assert (gate.outcome, gate.decided_by) == ("needs_human", None)
    assert "modeling_evil.py (sha256 abababababab)" in gate.reason and "isolation: bubblewrap" in gate.reason


def test_unisolated_remote_code_or_an_operator_who_requires_isolation_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    none = IsolationFacts(kind=Isolation.NONE, detail="bubblewrap was not found")
    est = placed(priced(0.0), isolation=none)
    assert evaluate_gate(est, POLICY).outcome == "approved"
    remote = est.model_copy(update={"placement": est.placement.model_copy(update={"trust_remote_code": True})})
    assert "runs only isolated, and isolation: none (bubblewrap was not found)" in evaluate_gate(remote, POLICY).reason
    monkeypatch.setenv("AEGIS_REQUIRE_ISOLATION", "true")
    gate = evaluate_gate(est, POLICY)
    assert gate.outcome == "refused" and "AEGIS_REQUIRE_ISOLATION is set and isolation: none" in gate.reason


@pytest.mark.parametrize("remaining", [0.4, 0.1, 1.0 / 3, 2.5])
def test_a_hold_cut_to_the_money_left_never_passes_it(remaining: float) -> None:
    """The tolerance lets a hold that just fits start; the hold itself is never more than what is left."""
    limits = attempt_limits(
        estimated_seconds=60.0,
        price_usd_per_s=1.0 / 3600,
        default_timeout_s=10**6,
        remaining_usd=remaining,
    )
    assert limits.budget_capped and limits.hold_usd <= remaining
