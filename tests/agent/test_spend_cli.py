"""`aegis spend` as an operator runs it: the store's ledger as a table, JSON whose sums are the store's, a PNG beside
the runs, one line and exit code 2 for a bad day or grouping, and the brake pulled and released from the CLI."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

import tools.policy.grants as grants
from agent.cli import main
from tests.policy.test_spend_report import OPERATOR, PER_S, PNG_MAGIC, Clock, attempt, fill
from tools.core.money import usd
from tools.policy.records import SpendKind
from tools.policy.spend_report import day_start
from tools.policy.store import SpendStore, spend_store

MARCH = "2025-03-01"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SpendStore:
    """The installation's store (AEGIS_SPEND_DB), filled with a test clock; the operator's limits from the env."""
    path = tmp_path / "store" / "spend.sqlite"
    path.parent.mkdir()
    monkeypatch.setenv("AEGIS_SPEND_DB", str(path))
    monkeypatch.setenv("AEGIS_PERSON_MONTH_USD", str(OPERATOR.scopes.person_month_usd))
    monkeypatch.setenv("AEGIS_INSTALL_MONTH_USD", str(OPERATOR.scopes.install_month_usd))
    monkeypatch.setenv("AEGIS_USER", "ops-alice")
    with monkeypatch.context() as patch:  # its running attempt is another server's: this aegis leaves it be
        patch.setattr(grants, "this_host", lambda: "another-server")
        return fill(path)


def spend(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["spend", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_sums_are_the_store_ledger(store: SpendStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = spend(capsys, "--since", MARCH, "--json")
    assert code == 0
    report = json.loads(out)
    assert list(report)[:7] == ["by", "since", "groups", "totals", "limits", "brake", "chart"]
    assert report["by"] == "person" and report["since"] == MARCH
    ledger = spend_store().ledger(day_start(date(2025, 3, 1)))
    for kind in SpendKind:
        in_store = sum(r.usd for r in ledger if r.kind is kind)
        assert report["totals"][f"{kind.value}_usd"] == pytest.approx(in_store)
        for group in report["groups"]:
            mine = sum(r.usd for r in ledger if r.kind is kind and r.person == group["group"])
            assert group[f"{kind.value}_usd"] == pytest.approx(mine)
    assert {g["group"] for g in report["groups"]} == {"alice", "bob", "carol"}
    limits = {(limit["scope"], limit["person"]): limit for limit in report["limits"]}
    assert set(limits) >= {("person_month", "alice"), ("install_month", "")}
    for limit in report["limits"]:
        assert limit["left_usd"] == pytest.approx(max(0.0, limit["limit_usd"] - limit["committed_usd"]))
        assert limit["name"] and limit["limit_usd"] in (20.0, 50.0)
    assert report["brake"]["frozen"] is False and report["brake"]["decided_by"] == "ops"
    chart = Path(report["chart"])
    assert chart == tmp_path / "runs" / "spend-person.png"  # beside the runs (AEGIS_RUNS_DIR)
    assert chart.read_bytes().startswith(PNG_MAGIC)


def test_the_table_by_day_names_the_money_and_the_chart(
    store: SpendStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "out" / "by-day.png"
    code, out, err = spend(capsys, "--by", "day", "--since", MARCH, "--chart", str(chart))
    assert code == 0 and err == ""
    assert "Spend by day since 2025-03-01 (UTC)" in out
    lines = [line for line in out.splitlines() if "│" in line]  # the table's rows
    [march_3] = [line for line in lines if "2025-03-03" in line]
    assert usd(0.40) in march_3
    [march_4] = [line for line in lines if "2025-03-04" in line]
    [held] = [a.held_usd for a in store.attempts() if a.person == "bob"]
    assert usd(1.10) in march_4 and usd(held) in march_4 and usd(600 * PER_S) in march_4
    assert "2025-02-27" not in out and "total" in out
    assert "limit: the installation's monthly limit: $50.00" in out
    assert "spending is open (unfrozen by ops" in out
    assert f"chart: {chart}" in out and chart.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("by", ["thread", "model", "gpu"])
def test_every_grouping_adds_up_to_the_same_totals(
    by: str, store: SpendStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = spend(capsys, "--by", by, "--since", MARCH, "--json")
    report = json.loads(out)
    assert code == 0 and report["by"] == by
    for kind in SpendKind:
        field = f"{kind.value}_usd"
        assert sum(g[field] for g in report["groups"]) == pytest.approx(report["totals"][field])
    assert Path(report["chart"]).name == f"spend-{by}.png"


def test_by_default_the_report_starts_this_month(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AEGIS_SPEND_DB", str(tmp_path / "spend.sqlite"))
    store = fill(tmp_path / "spend.sqlite")  # March 2025: long before this month
    store.clock = Clock(time.time())
    attempt(store, "now", "t-now", "erin", model="smollm2", gpu="cpu", billed=0.25)
    code, out, _ = spend(capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["since"] == datetime.now(UTC).date().replace(day=1).isoformat()
    assert [(g["group"], g["captured_usd"]) for g in report["groups"]] == [("erin", 0.25)]
    assert report["limits"] == [] and report["conversation_limit_usd"] == 5.0
    code, out, _ = spend(capsys)
    assert "limit: no limits beyond each conversation's $5.00" in out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "2025-13-01"], "is not a day: write it as YYYY-MM-DD"),
        (["--since", "03/01/2025"], "is not a day: write it as YYYY-MM-DD"),
        (["--by", "week"], "invalid choice: 'week'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_SPEND_DB", str(tmp_path / "spend.sqlite"))
    code, out, err = spend(capsys, *args)
    assert code == 2 and out == ""
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_freeze_and_unfreeze_from_the_cli(store: SpendStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = spend(capsys, "freeze", "--stop-running", "--reason", "month-end audit")
    assert code == 0 and len(out.strip().splitlines()) == 1
    assert "FROZEN by ops-alice" in out and "(month-end audit)" in out and "being stopped" in out
    brake = spend_store().brake()
    assert brake.frozen and brake.stop_running and brake.decided_by == "ops-alice" and brake.reason == "month-end audit"
    code, out, _ = spend(capsys, "--since", MARCH, "--json")
    assert json.loads(out)["brake"]["frozen"] is True
    code, out, _ = spend(capsys, "unfreeze")
    assert code == 0 and out.strip().startswith("spending is open (unfrozen by ops-alice")
    assert not spend_store().brake().frozen
