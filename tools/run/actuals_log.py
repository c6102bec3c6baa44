"""The ledger of actuals on disk: every attempt's estimate beside what it measured, appended once it ends, and
read back whole lines only (``tools.plan.actuals`` learns from the records; it reads nothing itself)."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from tools.core.paths import aegis_home
from tools.core.runlog import append_line, read_lines
from tools.core.spec import CostEstimate, ExecutionResult
from tools.plan.actuals import ActualRecord

log = logging.getLogger("aegis.actuals")


def ledger_path() -> Path:
    return aegis_home() / "actuals.jsonl"


def record_actual(run_id: str, attempt: int, estimate: CostEstimate, result: ExecutionResult) -> ActualRecord:
    record = ActualRecord(
        run_id=run_id,
        attempt=attempt,
        gpu=estimate.cost_breakdown.gpu,
        status=result.status,
        estimated_seconds=estimate.cost_breakdown.estimated_seconds,
        actual_seconds=result.duration_s,
        estimated_memory_gb=estimate.estimated_vram_gb,
        actual_memory_gb=result.peak_memory_gb,
        estimated_cost_usd=estimate.estimated_cost_usd,
        actual_cost_usd=result.actual_cost_usd,
    )
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, record.model_dump_json())
    return record


def read_actuals() -> list[ActualRecord]:
    """Every whole record of the ledger; a torn or foreign line is skipped with a warning, never fatal."""
    records = []
    path = ledger_path()
    for number, line in enumerate(read_lines(path), start=1):
        try:
            records.append(ActualRecord.model_validate_json(line))
        except ValidationError:
            log.warning("skipped line %d of %s: not a whole record (a torn write?)", number, path)
    return records
