"""What the chat answers without a job: the runs here, two runs compared, rows of a dataset, a run's model tried on
a prompt, a run's report, and help.

Each answer reads what the CLI reads (``tools.use.runs``, ``tools.use.compare``, ``tools.inputs.dataset``, the
sandboxed worker of ``tools.use.generate``) and writes nothing: no job, no estimate, no approval, no money. Every
input is bounded (rows, prompt length, a run reference's characters), and anything wrong is an AegisError of one
line that the tool turns into a refused result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agent.read_only_rules import LATEST_RUN, PREVIOUS_RUN
from tools.core.errors import AegisError
from tools.core.money import DASH, usd
from tools.inputs.dataset import APPROX_TOKENIZER, approx_token_count, load_records, resolve_format, tokenizer_name
from tools.inputs.local_models import SMOLLM2, resolve_model
from tools.inputs.tokenizer import load_tokenizer_offline
from tools.recipe.formatting import encode_record
from tools.use.compare import Comparison, compare_runs
from tools.use.generate import open_model
from tools.use.protocol import GenerationSettings
from tools.use.runs import RunRecord, RunSummary, find_run, list_runs

DEFAULT_ROWS = 5
MAX_ROWS = 20  # "the first 100000 rows" shows this many, and says so
MAX_LISTED = 10
MAX_MEASURED = 2000  # rows whose token lengths are measured; a larger dataset says how many were
MAX_PROMPT_CHARS = 2000
MAX_CELL = 160
MAX_COLUMNS = 4
MAX_REPORT_BYTES = 1 << 20
TRY_NEW_TOKENS = 120
_RUN_REF = re.compile(r"[A-Za-z0-9][\w.\-]{0,99}")
_MODEL_NAME = re.compile(r"[\w][\w:.\-/]{0,199}")


def cell(value: Any, limit: int = MAX_CELL) -> str:
    """A value as one table cell: one line, no column breaks, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pick_run(ref: str | None) -> RunRecord:
    """The run a reference names: 'latest', 'previous' (the one before the newest), an id or a unique start of one."""
    word = (ref or LATEST_RUN).strip()
    if not _RUN_REF.fullmatch(word):
        raise AegisError(f"{cell(word, 60)!r} is not a run id: use the id `/runs` lists, or 'the last run'")
    if word.lower() == PREVIOUS_RUN:
        runs = list_runs()
        if len(runs) < 2:
            raise AegisError(f"there {'is only one run' if runs else 'are no runs'} here, so there is no previous run")
        return find_run(runs[1].run_id)
    return find_run(word)


def _outcome(r: RunSummary) -> str:
    text = r.outcome
    if r.steps_done is not None and r.total_steps:
        text += f", step {r.steps_done}/{r.total_steps}"
    if r.parent_run:
        text += f", from run {r.parent_run}"
    return text


def _loss(before: float | None, after: float | None) -> str:
    if before is None and after is None:
        return DASH
    return " → ".join(DASH if v is None else f"{v:.3f}" for v in (before, after))


def runs_text(limit: int = MAX_LISTED) -> tuple[str, str]:
    """(one line, the table) of the runs here, newest first: id, when, model, method, outcome, loss, cost."""
    runs = list_runs()
    if not runs:
        return "no runs yet", "No runs here yet: ask for a fine-tune (say **help** for examples) and it is listed here."
    shown = runs[: max(1, min(limit, MAX_LISTED))]
    rows = [
        [
            f"`{r.run_id}`",
            r.when.strftime("%Y-%m-%d %H:%M") if r.when else DASH,
            cell(r.model or DASH, 60),
            r.method or DASH,
            cell(_outcome(r), 80),
            _loss(r.loss_before, r.loss_after),
            usd(r.cost_usd),
            "yes" if r.has_model else "no",
        ]
        for r in shown
    ]
    head = ["Run", "When (UTC)", "Model", "Method", "Outcome", "Held-out loss", "Cost", "Model kept"]
    more = f" (the newest {len(shown)} shown; `aegis runs` lists them all)" if len(shown) < len(runs) else ""
    text = (
        f"**{len(runs)} run(s) here, newest first**{more}\n\n{_table(head, rows)}\n\n"
        'Ask "compare the last two runs", "show the report of run ID" or "try run ID with: your prompt".'
    )
    return f"{len(runs)} run(s), newest {shown[0].run_id}", text


def _rows_table(rows: list[Any], title: str) -> str:
    body = [[row.name + (" *" if row.differs else ""), cell(row.a, 80), cell(row.b, 80)] for row in rows]
    return f"**{title}**\n\n" + _table(["", "A", "B"], body)


def comparison_text(c: Comparison) -> str:
    """What `aegis runs compare A B` prints, as markdown: metrics, the spec's differences, their answers."""
    differing = [row for row in c.spec if row.differs]
    same = len(c.spec) - len(differing)
    spec = _rows_table(differing, "Spec: what differs") if differing else "**Spec**: the same in every field."
    if differing and same:
        spec += f"\n\n{same} other spec field(s) are the same."
    answers = [[cell(g.prompt, 100), cell(g.a or DASH, 120), cell(g.b or DASH, 120)] for g in c.generations[:3]]
    said = "\n\n**Their answers (greedy)**\n\n" + _table(["Prompt", "A", "B"], answers) if answers else ""
    return (
        f"**A** `{c.a.run_id}` vs **B** `{c.b.run_id}` (* marks a difference)\n\n"
        f"{_rows_table(c.metrics, 'Metrics')}\n\n{spec}{said}"
    )


def compare_text(a_ref: str | None, b_ref: str | None) -> tuple[str, str]:
    a, b = pick_run(a_ref or LATEST_RUN), pick_run(b_ref or PREVIOUS_RUN)
    if a.run_id == b.run_id:
        raise AegisError(f"both name run {a.run_id}; name two different runs (`/runs` lists them)")
    return f"run {a.run_id} vs run {b.run_id}", comparison_text(compare_runs(a, b))


def _tokenizer(model_name: str | None) -> tuple[Any | None, str]:
    """The tokenizer that measures the rows: the named model's, else the demo model's where it is on this machine;
    None (and why) where neither can be had, so lengths are approximate."""
    if model_name is not None:
        if not _MODEL_NAME.fullmatch(model_name.strip()):
            raise AegisError(f"{cell(model_name, 60)!r} is not a model name: use local:NAME or OWNER/NAME")
        name = model_name.strip()
    else:
        try:
            resolve_model(SMOLLM2, build=False)
        except AegisError:
            return None, "no model was named and the demo model is not on this machine"
        name = SMOLLM2
    tokenizer = load_tokenizer_offline(name)
    return tokenizer, "" if tokenizer is not None else f"the tokenizer of {name} is not on this machine"


def _lengths(records: list[dict[str, Any]], fmt: str, tokenizer: Any | None) -> list[int]:
    if tokenizer is None:
        return [approx_token_count(r, fmt) for r in records]
    return [len(encode_record(tokenizer, r, fmt, 1 << 62)[0]) for r in records]


def preview_text(path: str, rows: int | None = None, model_name: str | None = None) -> tuple[str, str]:
    """The first rows of a dataset inside the allowed folders, its format, row count and token lengths."""
    if not path or len(path) > 500:
        raise AegisError("name the data file to preview, for example data/sample.jsonl")
    wanted = DEFAULT_ROWS if rows is None else rows
    if wanted < 1:
        raise AegisError(f"rows must be at least 1 (you asked for {wanted})")
    shown = min(wanted, MAX_ROWS)
    records = load_records(path)
    fmt = resolve_format(records, "auto", source=f"dataset '{Path(path).name}'")
    tokenizer, why = _tokenizer(model_name)
    measured = records[:MAX_MEASURED]
    lengths = _lengths(measured, fmt, tokenizer)
    columns = list(records[0])[:MAX_COLUMNS]
    table = _table(
        ["#", *columns], [[str(i + 1), *(cell(r.get(c, "")) for c in columns)] for i, r in enumerate(records[:shown])]
    )
    counted = tokenizer_name(tokenizer) if tokenizer is not None else f"{APPROX_TOKENIZER} ({why})"
    over = f" of the first {len(measured)}" if len(measured) < len(records) else ""
    cut = f" (you asked for {wanted}; at most {MAX_ROWS} are shown)" if wanted > MAX_ROWS else ""
    text = (
        f"**`{cell(path, 120)}`**: {len(records)} rows, format **{fmt}**; the first {min(shown, len(records))}{cut}:\n\n"
        f"{table}\n\nToken lengths{over} (prompt template and end token included): min {min(lengths)}, "
        f"mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}; counted with {counted}."
    )
    return f"{len(records)} rows, format {fmt}", text


def try_text(ref: str | None, prompt: str | None) -> tuple[str, str]:
    """A run's fine-tuned model answers one prompt, greedily, in its sandboxed worker (as `aegis generate` does)."""
    text = (prompt or "").strip()
    if not text:
        raise AegisError('say what to ask the model, for example: "try the last run with: What is LoRA?"')
    if len(text) > MAX_PROMPT_CHARS:
        raise AegisError(f"the prompt is {len(text)} characters; at most {MAX_PROMPT_CHARS} are tried")
    run = pick_run(ref)
    run.final_dir()  # a run without a model says so before anything loads
    spec = run.require_spec()
    with open_model(run) as worker:
        answer = worker.answer([{"role": "user", "content": text}], GenerationSettings(max_new_tokens=TRY_NEW_TOKENS))
        isolation = worker.isolation.describe()
    reply = answer.tuned.strip() or "(the fine-tuned model answered with nothing)"
    quoted = "\n".join(f"> {line}" for line in reply.splitlines())
    return f"run {run.run_id} answered", (
        f"**Run `{run.run_id}`** ({cell(spec.model_name, 60)}, {spec.method}) answers, greedily:\n\n{quoted}\n\n"
        f"_The model ran in a worker process; {isolation}._"
    )


def _summary_section(report: str) -> str:
    """The report's title and its Executive Summary: the part a person reads first."""
    lines = report.splitlines()
    title = next((line for line in lines if line.startswith("# ")), "")
    start = next((i for i, line in enumerate(lines) if line.strip().lower() == "## executive summary"), None)
    if start is None:
        return "\n".join(lines[:30])
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join([title, "", *lines[start : min(end, start + 40)]]).strip()


def report_text(ref: str | None) -> tuple[str, str]:
    """A run's REPORT.md cut to its summary, with where the full file is."""
    run = pick_run(ref)
    path = run.folder.report_path
    if not path.is_file():
        raise AegisError(f"run {run.run_id} has no report yet (its outcome: {run.outcome()})")
    with path.open(encoding="utf-8", errors="replace") as handle:
        report = handle.read(MAX_REPORT_BYTES)
    return f"report of run {run.run_id}", f"{_summary_section(report)}\n\nThe full report: `{path}`"


def help_text(planner: str) -> str:
    """What the assistant does, with requests to copy, and which model reads them."""
    return (
        "**What I can do** (planning with " + planner + ")\n\n"
        "- **Fine-tune**: “LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch with batch size 8, on "
        "cpu”. I estimate the cost, ask for your approval when money is involved, train in a sandbox, evaluate and "
        "write a report. Add “just the estimate” to only price it.\n"
        "- **Continue or build on a run**: “continue the run that stopped”, “train 2 more epochs on the last run”.\n"
        "- **Your runs**: “what runs do I have?”, “compare the last two runs”, “compare run A and run B”.\n"
        "- **Your data**: “show me the first 3 rows of data/sample.jsonl” (format, rows, token lengths).\n"
        "- **A trained model**: “try the last run with: What is the capital of France?”.\n"
        "- **A report**: “show the last report”, “show the report of run ID”.\n\n"
        "Looking at runs, data, reports and trying a model start nothing and spend nothing; only a fine-tune asks "
        "for approval."
    )
