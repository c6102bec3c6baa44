"""The checks a person declares for their own task, in the spec (``evals:``): validated when the spec is read.

A bad regex or JSON schema is a one-line spec error before anything runs, never a surprise after training.
Each check is applied by tools.evals.custom to the fine-tuned replies on the held-out prompts.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import regex
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, model_validator

CustomKind = Literal["exact", "contains", "regex", "json_schema", "numeric", "rouge_l", "llm_judge", "lm_eval"]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LM_EVAL_TASK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
NEEDS: dict[str, str] = {
    "regex": "pattern",
    "json_schema": "json_schema",
    "numeric": "tolerance",
    "rouge_l": "threshold",
    "llm_judge": "rubric",
    "lm_eval": "task",
}


class CustomEval(BaseModel):
    """One declared check: its kind says which of pattern, json_schema, tolerance, threshold, rubric, task it needs.

    exact / contains / numeric / rouge_l compare a reply with the row's reference; regex and json_schema judge the
    reply alone; llm_judge asks the configured chat model to grade it against the rubric; lm_eval names an
    lm-evaluation-harness task. The check passes when at least ``min_pass_rate`` of the rows pass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="Unique; the check is reported as custom:<name>.")
    kind: CustomKind
    pattern: str | None = Field(default=None, max_length=2000, description="regex: searched in the reply.")
    json_schema: dict[str, Any] | None = Field(default=None, description="json_schema: the reply must validate.")
    tolerance: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="numeric: last numbers' gap.")
    threshold: float | None = Field(default=None, ge=0, le=1, description="rouge_l: least F1 with the reference.")
    rubric: str | None = Field(default=None, min_length=1, max_length=4000, description="llm_judge: what to grade.")
    task: str | None = Field(default=None, description="lm_eval: an lm-evaluation-harness task name.")
    min_pass_rate: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _complete(self) -> CustomEval:
        needed = NEEDS.get(self.kind)
        if needed and getattr(self, needed) is None:
            raise ValueError(f"eval '{self.name}' of kind {self.kind} needs '{needed}'")
        extra = [f for f in NEEDS.values() if f != needed and getattr(self, f) is not None]
        if extra:
            raise ValueError(f"eval '{self.name}' of kind {self.kind} does not use {', '.join(extra)}")
        if self.pattern is not None:
            try:
                regex.compile(self.pattern)
            except regex.error as exc:
                raise ValueError(f"eval '{self.name}' has an invalid regex: {exc}") from None
        if self.json_schema is not None:
            try:
                Draft202012Validator.check_schema(self.json_schema)
            except SchemaError as exc:
                raise ValueError(f"eval '{self.name}' has an invalid JSON schema: {exc.message}") from None
        if self.task is not None and not LM_EVAL_TASK.match(self.task):
            raise ValueError(f"eval '{self.name}': '{self.task}' is not an lm-evaluation-harness task name")
        return self


def unique_names(evals: list[CustomEval]) -> list[CustomEval]:
    """The declared checks, refused when two share a name (each is reported by its name)."""
    seen: set[str] = set()
    for item in evals:
        if item.name in seen:
            raise ValueError(f"two evals are named '{item.name}'; give each a unique name")
        seen.add(item.name)
    return evals
