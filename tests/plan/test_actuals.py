"""Estimates that learn: the ledger of actuals, the recent error, the correction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.spec import CostEstimate, ExecutionResult, load_spec
from tools.inputs.prepared import prepare
from tools.plan.actuals import ActualRecord, apply_learning, learned_error
from tools.plan.estimator import estimate
from tools.run.actuals_log import read_actuals, record_actual

ROOT = Path(__file__).resolve().parents[2]
QUICK = (ROOT / "data/specs/sample_lora.yaml").read_text() + "max_steps: 3\n"


def sample_estimate(folder: Path) -> CostEstimate:
    """The modelled estimate of the sample spec, its data prepared the way a job prepares it."""
    prepared = prepare(load_spec(ROOT / "data/specs/sample_lora.yaml"), folder)
    return estimate(prepared.spec, dataset_stats=prepared.data.stats, model_config=prepared.config())


def record(ratio: float, status: str = "succeeded", gpu: str = "cpu") -> ActualRecord:
    return ActualRecord(
        run_id="r",
        attempt=1,
        gpu=gpu,
        status=status,
        estimated_seconds=10.0,
        actual_seconds=10.0 * ratio,
        estimated_memory_gb=1.0,
        actual_memory_gb=1.1,
        estimated_cost_usd=0.0,
        actual_cost_usd=0.0,
    )


def test_the_measured_peak_is_recorded_in_the_estimates_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs measure MiB; the estimate is in GB of 1e9 bytes. MiB / 1024 (GiB) would read a run 7% below its estimate."""
    monkeypatch.setenv("AEGIS_HOME", str(tmp_path))
    estimate = sample_estimate(tmp_path)
    result = ExecutionResult(status="succeeded", duration_s=10.0, peak_memory_mb=1796.0)
    stored = record_actual("r", 1, estimate, result)
    assert stored.actual_memory_gb == pytest.approx(1796.0 * 2**20 / 1e9)  # 1.883 GB, not 1.754
    assert read_actuals()[-1].actual_memory_gb == stored.actual_memory_gb


def test_recent_error_uses_finished_runs_of_the_same_gpu_only():
    records = [record(9.0, status="failed"), record(2.0, gpu="a10g"), record(1.2), record(1.4), record(1.3)]
    learned = learned_error(records, "cpu")
    assert learned.runs == 3 and learned.time_ratio == pytest.approx(1.3)
    assert learned_error(records, "h100") is None


def test_correction_applies_only_with_enough_runs(tmp_path: Path):
    estimate = sample_estimate(tmp_path)
    few = apply_learning(estimate, learned_error([record(1.5), record(1.5)], "cpu"))
    assert few.cost_breakdown.estimated_seconds == estimate.cost_breakdown.estimated_seconds
    assert any("no correction applied" in n for n in few.cost_breakdown.notes)
    enough = apply_learning(estimate, learned_error([record(1.5)] * 3, "cpu"))
    assert enough.cost_breakdown.estimated_seconds == pytest.approx(1.5 * estimate.cost_breakdown.estimated_seconds)
    assert any(n.startswith("the last 3 cpu runs took 1.50x") for n in enough.cost_breakdown.notes)


@pytest.mark.slow
def test_after_three_local_runs_the_fourth_estimate_shows_their_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AEGIS_LOCAL_PRICE_USD_PER_HOUR", "0.01")  # priced: modelled, never probed for free
    spec = tmp_path / "quick.yaml"
    spec.write_text(QUICK)
    for _ in range(3):
        main(["train", str(spec), "--yes"])
    assert len([r for r in read_actuals() if r.status == "succeeded"]) == 3
    capsys.readouterr()
    assert main(["estimate", str(spec), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    notes = estimate["cost_breakdown"]["notes"]
    assert any(n.startswith("the last 3 cpu runs took") for n in notes), notes
    assert any(n.startswith("corrected by") for n in notes), notes
