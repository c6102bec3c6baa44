"""What counts as a good fine-tune: the operator's thresholds for every model eval check."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.core.errors import AegisError
from tools.core.settings import settings


class EvalThresholds(BaseModel):
    """What counts as a good fine-tune; set by the operator, defaults sized for small models on a CPU."""

    model_config = ConfigDict(extra="forbid")

    min_loss_improvement: float = Field(default=0.05, ge=0, lt=1, description="Relative drop of the train loss.")
    max_final_loss: float | None = Field(default=None, gt=0, description="Bound on the final (smoothed) train loss.")
    max_eval_train_gap: float = Field(default=1.0, ge=0, description="Held-out minus train loss, in nats.")
    max_repetition: float = Field(default=0.5, ge=0, le=1, description="Mean share of repeated n-grams allowed.")
    repetition_ngram: int = Field(default=3, ge=1, le=8)
    leak_probe: bool = True
    max_leak_probes: int = Field(default=10, ge=1, le=200)
    leak_min_fraction: float = Field(
        default=0.6, gt=0, le=1, description="Share of a secret's body that, reproduced, counts as a leak."
    )
    n_generations: int = Field(default=5, ge=1, le=50)
    max_new_tokens: int = Field(default=120, ge=4, le=1024, description="Generation stops earlier at end-of-text.")
    format_min_pass_rate: float | None = Field(
        default=0.8, ge=0, le=1, description="Applies only when the held-out references share a format."
    )
    format_min_support: float = Field(
        default=0.8, gt=0.5, le=1, description="Share of references that must share a trait for it to be taught."
    )
    max_heldout_rows: int = Field(default=64, ge=1, description="Each row costs two forward passes.")
    min_task_score_gain: float | None = Field(
        default=0.0, ge=-1, le=1, description="Fine-tuned mean ROUGE-L minus the base's must exceed this; None: off."
    )
    max_degenerate_share: float = Field(
        default=0.2, ge=0, le=1, description="Share of fine-tuned replies allowed to be degenerate (or to loop)."
    )
    forgetting_check: bool = Field(default=True, description="Answer the general set with both models.")
    forgetting_set: Path | None = Field(default=None, description="A JSONL of prompt/reference rows; None: bundled.")
    max_forgetting_drop: float = Field(
        default=0.2, ge=0, le=1, description="A larger drop of the general-set score is a warning."
    )
    forgetting_rows: int = Field(default=16, ge=1, le=200)
    forgetting_new_tokens: int = Field(default=24, ge=4, le=512)

    @classmethod
    def from_config(cls) -> EvalThresholds:
        """The operator's thresholds: a YAML/JSON file named by AEGIS_EVAL_CONFIG, else the defaults; then the size
        of the evals a person chose (AEGIS_EVAL_ROWS, AEGIS_EVAL_GENERATIONS, AEGIS_EVAL_NEW_TOKENS, or the
        --eval-rows / --eval-generations / --eval-new-tokens flags) over either."""
        configured = settings()
        values: dict = {}
        if configured.eval_config:
            path = configured.eval_config
            try:
                values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise AegisError(f"eval thresholds file '{path}' is invalid: {str(exc).splitlines()[0]}") from None
            if not isinstance(values, dict):
                raise AegisError(f"eval thresholds file '{path}' must hold a mapping of threshold: value")
        sizes = {
            "max_heldout_rows": configured.eval_rows,
            "n_generations": configured.eval_generations,
            "max_new_tokens": configured.eval_new_tokens,
        }
        values = {**values, **{k: v for k, v in sizes.items() if v is not None}}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            where = f"eval thresholds file '{configured.eval_config}'" if configured.eval_config else "eval settings"
            raise AegisError(f"{where} is invalid: {str(exc).splitlines()[0]}; {format_errors(exc)}") from None


def format_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
