"""The CPU probe: real steps of the real script time a CPU run before it is estimated, cached per machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.core.errors import AegisError
from tools.core.measured import MeasuredTime
from tools.core.spec import TrainingSpec
from tools.inputs.prepared import prepare
from tools.plan.estimator import estimate
from tools.run.local import MetricsTail
from tools.run.probe import PROBE_STEPS, candidate_precisions, probe_cpu
from tools.run.render import render_script

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"


def _spec(**fields) -> TrainingSpec:
    base = {
        "model_name": "local:tiny-llama",
        "dataset_path": str(DATA),
        "method": "lora",
        "target_gpu": "cpu",
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 3,
        "seq_len": 128,
    }
    return TrainingSpec(**{**base, **fields})


@pytest.mark.slow
def test_the_probe_measures_each_precision_keeps_the_faster_and_caches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(tmp_path / "cache"))
    spec = _spec()
    prepared = prepare(spec, tmp_path / "data")
    measured = probe_cpu(spec, prepared.data, tmp_path / "probe")
    tried = candidate_precisions(spec)
    assert measured.precision in tried and measured.step_seconds > 0 and measured.startup_seconds > 0
    assert all(p in measured.source for p in tried) and f"{PROBE_STEPS} steps" in measured.source
    runs = sorted(p.name for p in (tmp_path / "probe").iterdir())
    assert runs == sorted(tried)
    again = probe_cpu(spec, prepared.data, tmp_path / "probe-again")
    assert again == measured.model_copy(update={"took_seconds": 0.0})  # from the cache: nothing ran this time
    assert measured.took_seconds > 0 and not (tmp_path / "probe-again").exists()


@pytest.mark.slow
def test_a_torn_cache_entry_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(tmp_path / "cache"))
    spec = _spec(precision="fp32")
    prepared = prepare(spec, tmp_path / "data")
    first = probe_cpu(spec, prepared.data, tmp_path / "one")
    (entry,) = (tmp_path / "cache" / "probes").glob("*.json")
    entry.write_text('{"step_seconds": 0.1, "startu', encoding="utf-8")
    second = probe_cpu(spec, prepared.data, tmp_path / "two")
    assert (tmp_path / "two").exists() and second.precision == first.precision == "fp32"


@pytest.mark.slow
def test_a_model_that_cannot_run_here_is_an_error_the_caller_can_fall_back_from(tmp_path: Path) -> None:
    spec = _spec(seq_len=128)
    prepared = prepare(spec, tmp_path / "data")
    broken = spec.model_copy(update={"lora_target_modules": ["no_such_module"]})
    with pytest.raises(AegisError, match="probe run failed"):
        probe_cpu(broken, prepared.data, tmp_path / "probe")


def test_a_cache_that_cannot_be_written_does_not_fail_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"  # its "cache" folder cannot be made: every write there fails, as on a full disk
    blocker.write_text("x", encoding="utf-8")
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(blocker / "cache"))
    spec = _spec(precision="fp32")
    measured = probe_cpu(spec, prepare(spec, tmp_path / "data").data, tmp_path / "probe")
    assert measured.step_seconds > 0 and measured.took_seconds > 0


def test_a_measured_step_replaces_the_modelled_time(tmp_path: Path) -> None:
    spec = _spec(precision="fp32")
    prepared = prepare(spec, tmp_path / "data")
    measured = probe_cpu(spec, prepared.data, tmp_path / "probe")
    modelled = estimate(spec, dataset_stats=prepared.data.stats, model_config=prepared.config())
    priced = estimate(spec, dataset_stats=prepared.data.stats, model_config=prepared.config(), measured=measured)
    b = priced.cost_breakdown
    assert modelled.cost_breakdown.time_source == "modelled" and b.time_source.startswith("measured: ")
    assert b.step_seconds == measured.step_seconds and b.measured_precision == "fp32"
    training = b.total_steps * measured.step_seconds + measured.startup_seconds
    assert training <= b.estimated_seconds < training * 1.5  # plus the held-out passes
    assert any(note.startswith("time per step measured") for note in b.notes)


def test_the_run_uses_the_precision_the_probe_measured(tmp_path: Path) -> None:
    rendered = render_script(
        _spec(), tmp_path, model_path="/m", dataset_path=DATA, eval_dataset_path=None, extra={"precision": "fp32"}
    )
    assert rendered.config["precision"] == "fp32"
    with pytest.raises(AegisError, match="run option 'precision'"):
        render_script(
            _spec(), tmp_path, model_path="/m", dataset_path=DATA, eval_dataset_path=None, extra={"precision": "x"}
        )


def test_a_stop_ends_the_probe_and_nothing_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(tmp_path / "cache"))
    spec = _spec(precision="fp32")
    prepared = prepare(spec, tmp_path / "data")
    with pytest.raises(AegisError, match="the probe was stopped"):
        probe_cpu(spec, prepared.data, tmp_path / "probe", should_stop=lambda: True)
    assert not list((tmp_path / "cache").glob("probes/*.json"))
    assert not any(
        r.get("type") == "end" for r in MetricsTail(tmp_path / "probe" / "fp32" / "metrics.jsonl").read_new()
    )


PROBE_IN_A_PROCESS = """
import sys
from pathlib import Path
from tools.core.spec import TrainingSpec
from tools.inputs.prepared import prepare
from tools.run.probe import probe_cpu
folder = Path(sys.argv[1])
spec = TrainingSpec.model_validate_json(Path(sys.argv[2]).read_text())
prepared = prepare(spec, folder / "data")
print(probe_cpu(spec, prepared.data, folder / "probe").model_dump_json())
"""


@pytest.mark.slow
def test_two_processes_probing_the_same_shape_both_measure_and_leave_one_whole_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(tmp_path / "cache"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(_spec(precision="fp32").model_dump_json(), encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE_IN_A_PROCESS, str(tmp_path / name), str(spec_file)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    measured = [MeasuredTime.model_validate_json(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(m.precision == "fp32" and m.step_seconds > 0 for m in measured)
    (entry,) = (tmp_path / "cache" / "probes").iterdir()  # one entry, no temporary file left beside it
    assert MeasuredTime.model_validate_json(entry.read_text(encoding="utf-8")) in measured  # one of the two, whole
