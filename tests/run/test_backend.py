"""One backend interface: the spec's target decides where it runs; what is approved is where it runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.stand_ins import PaidGpuStandIn
from tools.core.catalog import get_gpu
from tools.core.errors import AegisError
from tools.core.spec import BudgetPolicy, TrainingSpec, parse_spec
from tools.job.attempt import run_job
from tools.job.pipeline import run_pipeline
from tools.job.planning import estimate_job, set_spec
from tools.job.state import new_job
from tools.run.backend import Backend, LocalBackend, ModalBackend, NoBackend, choose_backend

ROOT = Path(__file__).resolve().parents[2]


def _spec(**fields) -> TrainingSpec:
    values = {
        "model_name": "local:tiny-llama",
        "dataset_path": str(ROOT / "data/sample.jsonl"),
        "method": "lora",
        "micro_batch_size": 4,
        "seq_len": 128,
        "max_steps": 2,
        "learning_rate": 1e-3,
        "target_gpu": "a10g",
    }
    return parse_spec(values | fields)


def test_both_backends_satisfy_the_interface() -> None:
    for backend in (LocalBackend(), ModalBackend()):
        assert isinstance(backend, Backend)
    assert isinstance(PaidGpuStandIn(), Backend)


def test_the_target_decides_the_backend() -> None:
    assert choose_backend(_spec(target_gpu="cpu")).name == "local"
    with pytest.raises(NoBackend, match=r"no backend here can run on a10g now \(modal: Modal is not configured"):
        choose_backend(_spec())  # no Modal token here: nothing runs an a10g, and the CPU is never taken for one
    with pytest.raises(NoBackend, match="the local backend has no a10g"):
        choose_backend(_spec(), "local")
    with pytest.raises(AegisError, match="unknown backend 'slurm'"):
        choose_backend(_spec(), "slurm")


def test_an_a10g_spec_without_modal_is_never_trained_on_the_cpu(tmp_path: Path) -> None:
    job = estimate_job(set_spec(new_job(BudgetPolicy()), _spec(), source="test"))
    est = job.estimate
    assert est.placement.backend is None and "Modal is not configured" in est.placement.hint
    # The offer: the same job on this CPU, with its own estimate.
    offer = job.cpu_offer
    assert offer is not None and offer.cost_breakdown.gpu == "cpu" and offer.placement.backend == "local"
    with pytest.raises(NoBackend):
        run_job(job)  # no approval could exist, and not even the store is asked: no backend
    asked = []
    done = run_pipeline(job, job.spec, ask=lambda j: asked.append(j) or ("approve", "person:test"))
    assert done.status == "refused" and not done.attempts and not asked
    assert "nothing here can run it" in done.gate.reason
    assert not list(Path(done.run_dir).glob("attempt-*"))
    report = Path(done.report_path).read_text(encoding="utf-8")
    assert "1× a10g (not run)" in report


def test_the_cpu_offer_is_its_own_spec_estimate_approval_and_report(tmp_path: Path) -> None:
    gpu_job = estimate_job(set_spec(new_job(BudgetPolicy()), _spec(), source="test"))
    cpu_spec = _spec(target_gpu="cpu")
    job = run_pipeline(new_job(BudgetPolicy()), cpu_spec, ask=lambda j: ("approve", "person:test"))
    assert job.spec.spec_hash() != gpu_job.spec.spec_hash()
    assert job.estimate.placement.backend == "local" and job.approval.spec_hash == cpu_spec.spec_hash()
    assert [(a.executor, a.gpu) for a in job.attempts] == [("local", "cpu")]
    assert "| GPU | 1× cpu (local) |" in Path(job.report_path).read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_third_backend_is_one_class_and_the_job_steps_run_it_unchanged(gpu_cloud: PaidGpuStandIn) -> None:
    asked = []
    spec = _spec()
    job = run_pipeline(
        new_job(BudgetPolicy(soft_threshold_usd=0.0)), spec, ask=lambda j: asked.append(j) or ("approve", "person:test")
    )
    price = get_gpu("a10g").price_usd_per_sec
    est = job.estimate
    assert est.placement.backend == "stand-in" and est.cost_breakdown.gpu == "a10g"
    assert est.estimated_cost_usd == pytest.approx(est.cost_breakdown.estimated_seconds * price)
    assert len(asked) == 1 and gpu_cloud.runs == [spec.spec_hash()]
    attempt = job.attempts[-1]
    assert (attempt.executor, attempt.gpu, attempt.status) == ("stand-in", "a10g", "succeeded")
    started = next(e for e in job.folder.events() if e.phase == "train" and e.status == "started")
    assert "on stand-in" in started.message and started.data["held_usd"] > 0
    assert "| GPU | 1× a10g (stand-in) |" in Path(job.report_path).read_text(encoding="utf-8")


def test_no_executor_branch_outside_tools_run() -> None:
    found = subprocess.run(
        ["grep", "-rnE", r"executor ?==|executor ?!=|== ?\"modal\"|\"modal\" ?==", "tools", "agent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    assert [line for line in found if not re.match(r"tools/run/", line)] == []
