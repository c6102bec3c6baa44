"""One optimize rule: the optimizer's proposal always needs a person, whether a refusal or a person's Optimize led
to it, even when the proposal is cheap enough for the policy to approve on its own."""

from __future__ import annotations

from pathlib import Path

from tools.core.spec import BudgetPolicy, TrainingSpec, parse_spec
from tools.core.status import Decision, JobStatus
from tools.inputs.prepared import prepare
from tools.job.approval import gate_job, pending_request
from tools.job.offers import offer_optimization
from tools.job.pipeline import run_pipeline
from tools.job.planning import estimate_job, set_spec
from tools.job.quoting import propose
from tools.job.state import JobState, new_job
from tools.plan.estimator import estimate
from tools.plan.optimizer import OptimizationProposal

ROOT = Path(__file__).resolve().parents[2]


def _spec() -> TrainingSpec:
    return parse_spec(
        {
            "model_name": "local:tiny-llama",
            "dataset_path": str(ROOT / "data/sample.jsonl"),
            "target_gpu": "h100",
            "num_epochs": 20,
        }
    )


def _prices(tmp_path: Path) -> tuple[float, OptimizationProposal]:
    """The spec's price on its h100 and the optimizer's cheaper proposal, as the job will see them."""
    spec = _spec()
    prepared = prepare(spec, tmp_path / "prices")
    asked = estimate(spec, dataset_stats=prepared.data.stats, model_config=prepared.config()).estimated_cost_usd
    proposal = propose(prepared, BudgetPolicy(max_budget_usd=100, soft_threshold_usd=100), 0.0)
    assert isinstance(proposal, OptimizationProposal) and proposal.estimate.estimated_cost_usd < asked
    return asked, proposal


def test_a_proposal_after_optimize_at_the_gate_is_put_to_a_person(gpu_cloud, tmp_path):
    asked, proposal = _prices(tmp_path)
    cheap = proposal.estimate.estimated_cost_usd
    policy = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=(asked + cheap) / 2)  # the proposal is under it
    shown = []

    def person(job: JobState) -> tuple[Decision, str]:
        shown.append(pending_request(job))
        return (Decision.OPTIMIZE if len(shown) == 1 else Decision.CANCEL), "person:test"

    job = run_pipeline(new_job(policy), _spec(), ask=person)
    assert [r.gpu for r in shown] == ["h100", proposal.spec.target_gpu]  # asked again: never approved by policy
    assert shown[1].estimated_cost_usd <= policy.soft_threshold_usd
    assert shown[1].optimization is not None and shown[1].optimization.changes["target_gpu"][1] != "h100"
    assert job.status == JobStatus.CANCELLED and not job.attempts and not job.policy.allow_auto_approve


def test_a_proposal_after_a_refusal_is_put_to_a_person(gpu_cloud, tmp_path):
    asked, proposal = _prices(tmp_path)
    cheap = proposal.estimate.estimated_cost_usd
    limit = (asked + cheap) / 2  # the job as asked is over the hard limit; the proposal is under the soft one
    job = new_job(BudgetPolicy(max_budget_usd=limit, soft_threshold_usd=limit))
    job = gate_job(estimate_job(set_spec(job, _spec(), source="test")))
    assert job.status == JobStatus.REFUSED
    job, offer, why_not = offer_optimization(job)
    assert offer is not None, why_not
    job = gate_job(job)
    assert job.status == JobStatus.AWAITING_APPROVAL and job.approval is None
    assert "auto-approve is off" in job.gate.reason
