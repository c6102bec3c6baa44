"""The local sandbox holds against a model that ships hostile code, and says so where it cannot be had."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.stand_ins import attack_log, hostile_model
from tools.core.isolation import Isolation
from tools.core.spec import BudgetPolicy, TrainingSpec, parse_spec
from tools.job.pipeline import run_pipeline
from tools.job.planning import estimate_job, set_spec
from tools.job.state import new_job
from tools.run.local import run_local
from tools.run.render import RenderedScript
from tools.run.sandbox import IsolationRefused, local_isolation, runtime_paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AEGIS_BWRAP", str(tmp_path / "no-such-bwrap"))


def _script(folder: Path, body: str, **config: str) -> RenderedScript:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "train.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    values = {"output_dir": str(folder / "output"), "metrics_path": str(folder / "metrics.jsonl"), "device": "cpu"}
    (folder / "config.json").write_text(json.dumps(values | config), encoding="utf-8")
    return RenderedScript.from_paths(script, folder / "config.json")


def _spec(**fields) -> TrainingSpec:
    return TrainingSpec(model_name="m", dataset_path="d.jsonl", target_gpu="cpu", **fields)


def test_bubblewrap_is_here_for_these_tests() -> None:
    # The Makefile installs it; without it every test below would test the refusal instead of the sandbox.
    assert local_isolation().kind is Isolation.BUBBLEWRAP, local_isolation().detail


def test_the_hostile_code_attacks_when_nothing_contains_it(tmp_path: Path, listener) -> None:
    # The control: the same code imported by a plain process reads the secret, escapes and connects.
    model = hostile_model(tmp_path, listener.port)
    subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import hostile", str(model.folder)],
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    seen = attack_log(tmp_path)[0]["import"]
    assert seen["read"] == "hf_SECRET_TOKEN_123" and seen["write"] == "ok" and seen["connect"] == "ok"
    assert model.escaped.exists() and listener.connections == 1


def test_the_sandbox_sees_neither_home_nor_another_run_nor_the_network(tmp_path: Path, listener) -> None:
    other_run = tmp_path / "runs" / "other-run"
    other_run.mkdir(parents=True)
    (other_run / "spec.json").write_text("{}", encoding="utf-8")
    rendered = _script(
        tmp_path / "runs" / "this-run" / "attempt-1",
        f"""
        import json, os, socket
        seen = {{"home": os.environ["HOME"], "home_files": os.listdir(os.environ["HOME"])}}
        seen["other_run"] = os.path.exists({str(other_run)!r})
        try:
            seen["real_home"] = sorted(os.listdir({str(Path.home())!r}))
        except OSError:
            seen["real_home"] = []
        try:
            socket.create_connection(("127.0.0.1", {listener.port}), timeout=2).close()
            seen["connect"] = "ok"
        except OSError as exc:
            seen["connect"] = type(exc).__name__
        open({str(tmp_path / "outside")!r}, "w").write("x")  # lands in the sandbox's own /tmp, not this one
        try:
            open({str(Path(sys.prefix) / "pwned")!r}, "w").write("x")
            seen["write_runtime"] = "ok"
        except OSError as exc:
            seen["write_runtime"] = type(exc).__name__
        open("/tmp/scratch", "w").write("private")
        json.dump(seen, open("seen.json", "w"))
        """,
    )
    result = run_local(_spec(), rendered.workdir, rendered, timeout_s=60, memory_limit_mb=None)
    assert result.exit_code == 0 and result.isolation is Isolation.BUBBLEWRAP
    seen = json.loads((rendered.workdir / "seen.json").read_text())
    assert seen["home"] != str(Path.home()) and seen["home_files"] == []
    # Of the person's HOME only the folders of the Python runtime itself exist (when it lives there), read-only.
    home = Path.home().resolve()
    runtime = {p.relative_to(home).parts[0] for p in runtime_paths() if p.is_relative_to(home)}
    assert set(seen["real_home"]) <= runtime and ".ssh" not in seen["real_home"] and seen["other_run"] is False
    assert seen["connect"] != "ok" and listener.connections == 0
    assert not (tmp_path / "outside").exists()
    assert seen["write_runtime"] == "OSError" and not (Path(sys.prefix) / "pwned").exists()


def test_inputs_are_read_only_inside(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "hi"}\n', encoding="utf-8")
    rendered = _script(
        tmp_path / "attempt-1",
        f"""
        try:
            open({str(data)!r}, "a").write("tampered")
            said = "ok"
        except OSError as exc:
            said = type(exc).__name__
        open("said.txt", "w").write(said + " " + open({str(data)!r}).read())
        """,
        dataset_path=str(data),
    )
    run_local(_spec(), rendered.workdir, rendered, timeout_s=60, memory_limit_mb=None)
    said = (rendered.workdir / "said.txt").read_text()
    assert said.startswith("OSError") and '"hi"' in said
    assert data.read_text(encoding="utf-8") == '{"text": "hi"}\n'


def test_without_bubblewrap_a_run_says_isolation_none(tmp_path: Path, no_bwrap) -> None:
    facts = local_isolation()
    assert facts.kind is Isolation.NONE and "bubblewrap was not found" in facts.detail
    rendered = _script(tmp_path / "attempt-1", "open('ran', 'w').write('yes')")
    result = run_local(_spec(), rendered.workdir, rendered, timeout_s=60, memory_limit_mb=None)
    assert result.exit_code == 0 and result.isolation is Isolation.NONE


@pytest.mark.parametrize("why", ["remote code", "operator"])
def test_without_bubblewrap_remote_code_or_the_operator_refuses_the_start(
    tmp_path: Path, no_bwrap, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    if why == "operator":
        monkeypatch.setenv("AEGIS_REQUIRE_ISOLATION", "1")
    rendered = _script(tmp_path / "attempt-1", "open('ran', 'w').write('yes')")
    with pytest.raises(IsolationRefused, match="isolation: none"):
        run_local(
            _spec(trust_remote_code=why == "remote code"),
            rendered.workdir,
            rendered,
            timeout_s=60,
            memory_limit_mb=None,
        )
    assert not (rendered.workdir / "ran").exists()


def _hostile_spec(folder: Path, **fields) -> TrainingSpec:
    return parse_spec(
        {
            "model_name": str(folder),
            "dataset_path": str(ROOT / "data/sample.jsonl"),
            "method": "lora",
            "micro_batch_size": 4,
            "seq_len": 128,
            "max_steps": 2,
            "learning_rate": 1e-3,
            "target_gpu": "cpu",
            "trust_remote_code": True,
            **fields,
        }
    )


def test_a_remote_code_model_is_never_run_unisolated_and_the_estimate_says_why(
    tmp_path: Path, no_bwrap, listener
) -> None:
    model = hostile_model(tmp_path, listener.port)
    job = new_job(BudgetPolicy())
    job = estimate_job(set_spec(job, _hostile_spec(model.folder), source="test"))
    est = job.estimate
    assert est.placement.isolation.kind is Isolation.NONE and est.placement.trust_remote_code
    assert [f.name for f in est.placement.remote_code] == ["hostile.py"]
    person = []
    done = run_pipeline(job, job.spec, ask=lambda j: person.append(j) or ("approve", "person:test"))
    assert done.status == "refused" and not done.attempts and not person
    assert "runs only isolated" in done.gate.reason and "isolation: none" in done.gate.reason
    assert not model.escaped.exists() and listener.connections == 0


@pytest.mark.slow
def test_a_remote_code_model_trains_in_the_sandbox_and_its_attacks_fail(tmp_path: Path, listener) -> None:
    model = hostile_model(tmp_path, listener.port)
    asked = []

    def person(job):
        asked.append(job.gate.reason)
        return "approve", "person:test"

    job = run_pipeline(new_job(BudgetPolicy()), _hostile_spec(model.folder), ask=person)

    # A free run on this CPU, yet the policy did not approve it: a person did, told which code runs.
    digest = job.estimate.placement.remote_code[0].sha256
    assert len(asked) == 1 and "hostile.py" in asked[0] and digest[:12] in asked[0]
    assert job.attempts[-1].status == "succeeded" and job.attempts[-1].isolation is Isolation.BUBBLEWRAP
    assert job.eval_result is not None
    seen = attack_log(Path(job.run_dir))
    where = {next(iter(entry)) for entry in seen}
    assert {"import", "forward"} <= where  # the code really ran, at import and in forward
    for entry in seen:
        attempt = next(iter(entry.values()))
        # Its write may land in the sandbox's own /tmp (a tmpfs that goes with it); never on this machine.
        assert attempt["read"].startswith("failed") and attempt["connect"].startswith("failed")
        assert attempt["home"] != str(Path.home())
    assert not model.escaped.exists() and listener.connections == 0
    report = Path(job.report_path).read_text(encoding="utf-8")
    assert "hostile.py" in report and digest[:12] in report and "isolation: bubblewrap" in report
    assert os.environ.get("HOME")  # the person's HOME was never the sandbox's
