"""In the chat: a GPU nobody here has is said before anything is asked for, and the CPU offer is its own job."""

from __future__ import annotations

from agent.session import AgentSession
from tools.core.spec import BudgetPolicy
from tools.run.backend import default_target

A10G = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 3 steps on a10g"


def tools_called(job) -> list[str]:
    return [e.data["tool"] for e in job.folder.events() if e.phase == "tool"]


def test_an_a10g_request_without_modal_is_not_runnable_and_the_cpu_is_offered_not_taken():
    session = AgentSession("offline", policy=BudgetPolicy(soft_threshold_usd=0.0))
    try:
        first = session.send(A10G)
        assert first.pending is None and first.job.spec.target_gpu == "a10g"
        assert tools_called(first.job) == ["estimate_cost"] and not first.job.attempts
        reply = first.replies[-1]
        assert "Not runnable here" in reply and "Modal is not configured" in reply
        assert "The same job on this CPU: $" in reply and "isolation: bubblewrap" in reply and "on cpu" in reply
        second = session.send(A10G.replace("on a10g", "on cpu"))
    finally:
        session.close()
    job = second.job
    assert job.run_id != first.job.run_id and job.spec.target_gpu == "cpu"
    assert job.estimate.placement.backend == "local" and job.approval.spec_hash == job.spec.spec_hash()
    assert [(a.executor, a.gpu) for a in job.attempts] == [("local", "cpu")]
    assert tools_called(job)[:3] == ["estimate_cost", "request_approval", "run_local"]


def test_a_request_that_names_no_device_gets_one_that_can_run_here():
    assert default_target({}) == "cpu"  # no Modal here: the default a10g cannot run, this CPU can
    assert default_target({"num_gpus": 2}) == "a10g"  # several GPUs are never the CPU


def test_with_a_gpu_backend_the_default_stays_the_specs(gpu_cloud):
    assert default_target({}) == "a10g"
