"""The data model of SPEC.md: the source of truth every tool, template and report reads.

Boundaries are pydantic v2 models with ``extra="forbid"`` so a typo in a spec file is
an error naming the field, not a silently ignored knob.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tools.core.catalog import gpu_names
from tools.core.custom_evals import CustomEval, unique_names
from tools.core.errors import SpecError
from tools.core.files import read_mapping
from tools.core.isolation import Isolation, Placement
from tools.core.settings import settings
from tools.core.status import AttemptStatus, EventStatus, FailureClass
from tools.recipe.config import SPEC_FIELDS, DatasetFormat, LrScheduler, Method, OptimizerName, Sharding

# bf16_pure: weights, gradients and optimizer states in bf16, no fp32 master copy (half the memory of mixed
# precision for a full fine-tune, at some cost in update precision).
Precision = Literal["auto", "bf16", "fp16", "fp32", "bf16_pure"]


def _shared(name: str, **extra: Any) -> Any:
    """The Field of a spec field the script reads too: default and bounds from the recipe's one table."""
    rule = SPEC_FIELDS[name]
    return Field(
        default=rule.default, ge=rule.ge, gt=rule.gt, le=rule.le, lt=rule.lt, max_length=rule.max_length, **extra
    )


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return value.astimezone(UTC)


AwareUTC = Annotated[datetime, AfterValidator(_aware_utc)]
"""A timezone-aware timestamp normalised to UTC: what every record the project writes carries."""


class TrainingSpec(BaseModel):
    """One fine-tuning job. Every field that changes memory or time is modelled by the estimator."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # The fields the training script reads take their default and bounds from tools/recipe/config.py (_shared).
    method: Method = _shared("method")
    model_name: str = Field(min_length=1, max_length=300)
    dataset_path: str = Field(min_length=1, max_length=1000)
    dataset_format: DatasetFormat = _shared("dataset_format")
    eval_dataset_path: str | None = Field(default=None, max_length=1000)
    num_epochs: int = _shared("num_epochs")
    max_steps: int | None = _shared("max_steps", description="Stop after this many optimizer steps.")
    micro_batch_size: int = _shared("micro_batch_size")
    gradient_accumulation_steps: int = _shared("gradient_accumulation_steps")
    learning_rate: float = _shared("learning_rate")
    lr_scheduler: LrScheduler = _shared("lr_scheduler")
    warmup_steps: int = _shared("warmup_steps")
    weight_decay: float = _shared("weight_decay")
    seq_len: int = _shared("seq_len")
    target_gpu: str = "a10g"
    num_gpus: int = Field(default=1, ge=1, le=8)
    lora_r: int = _shared("lora_r")
    lora_alpha: int = _shared("lora_alpha")
    lora_dropout: float = _shared("lora_dropout")
    lora_target_modules: list[str] | None = _shared(
        "lora_target_modules", description="None: the attention projections of the model's architecture."
    )
    eval_split: float = _shared("eval_split")
    seed: int = _shared("seed")
    gradient_checkpointing: bool = _shared("gradient_checkpointing")
    packing: bool = _shared("packing")
    precision: Precision = "auto"
    sharding: Sharding = _shared(
        "sharding", description="Default: fsdp for a full fine-tune on several GPUs, where a replica rarely fits."
    )
    optimizer: OptimizerName = _shared("optimizer")
    trust_remote_code: bool = _shared("trust_remote_code")
    evals: Annotated[list[CustomEval], AfterValidator(unique_names)] = Field(default_factory=list, max_length=32)

    @model_validator(mode="before")
    @classmethod
    def _default_sharding(cls, data: Any) -> Any:
        """A full fine-tune on several GPUs shards unless told not to: 16 bytes a weight on every GPU rarely fits."""
        if isinstance(data, dict) and "sharding" not in data:
            gpus, method = data.get("num_gpus", 1), data.get("method", SPEC_FIELDS["method"].default)
            if method == "full_finetune" and isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 1:
                return {**data, "sharding": "fsdp"}
        return data

    @field_validator("learning_rate")
    @classmethod
    def _finite_lr(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("model_name", "dataset_path", "eval_dataset_path")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must not hold control characters (a NUL byte, a newline, a tab)")
        return value

    @field_validator("target_gpu")
    @classmethod
    def _known_gpu(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in gpu_names():
            raise ValueError(f"unknown GPU '{value}'; choose one of {', '.join(gpu_names())}")
        return name

    @field_validator("lora_target_modules")
    @classmethod
    def _modules(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one module, or be left out")
            for name in value:
                if len(name) > 200 or not name.replace("_", "").replace(".", "").isalnum():
                    raise ValueError(f"'{name}' is not a module name")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> TrainingSpec:
        problems = []
        if self.target_gpu == "cpu" and self.num_gpus != 1:
            problems.append("num_gpus must be 1 when target_gpu is cpu")
        if self.sharding == "fsdp" and self.num_gpus < 2:
            problems.append("sharding fsdp needs num_gpus of 2 or more (one GPU has nothing to share)")
        if self.sharding == "fsdp" and self.method == "qlora":
            problems.append("sharding fsdp is not supported with qlora; use lora or full_finetune")
        if self.optimizer != "adamw" and self.target_gpu == "cpu":
            problems.append(f"optimizer {self.optimizer} needs bitsandbytes on a CUDA GPU; use adamw on cpu")
        if self.precision == "bf16_pure" and self.target_gpu in ("cpu", "t4"):
            problems.append(f"precision bf16_pure needs a GPU with bf16 ({self.target_gpu} has none)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def effective_batch_size(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation_steps * self.num_gpus

    def spec_hash(self) -> str:
        """The spec's hash; without declared evals it is the hash a spec had before they could be declared."""
        return stable_hash(self.model_dump(mode="json", exclude=None if self.evals else {"evals"}))


BUDGET_KEYS = ("max_budget_usd", "soft_threshold_usd", "allow_auto_approve")
SCOPE_LIMIT_KEYS = ("person_day_usd", "person_month_usd", "install_day_usd", "install_month_usd")


class BudgetPolicy(BaseModel):
    """Set by whoever runs the service. A chat request may tighten it for its run, never loosen it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_budget_usd: float = Field(default=5.00, ge=0)
    soft_threshold_usd: float = Field(default=2.00, ge=0)
    allow_auto_approve: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> BudgetPolicy:
        if self.soft_threshold_usd > self.max_budget_usd:
            raise ValueError("soft_threshold_usd must not exceed max_budget_usd")
        return self

    def tightened(self, max_budget_usd: float | None) -> BudgetPolicy:
        """The same policy with a lower hard limit; a higher request is ignored, never applied."""
        if max_budget_usd is None or max_budget_usd >= self.max_budget_usd:
            return self
        limit = max(0.0, max_budget_usd)
        return BudgetPolicy(
            max_budget_usd=limit,
            soft_threshold_usd=min(self.soft_threshold_usd, limit),
            allow_auto_approve=self.allow_auto_approve,
        )

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> BudgetPolicy:
        """Read the operator's policy: a YAML/JSON file (AEGIS_BUDGET_FILE), then AEGIS_* variables."""
        return cls.from_values(operator_budget(path))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> BudgetPolicy:
        """This policy out of what the operator set (``operator_budget``); the scope limits are not its own."""
        try:
            return cls.model_validate({key: value for key, value in values.items() if key not in SCOPE_LIMIT_KEYS})
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, "budget policy")) from None


def operator_budget(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Every budget value the operator set, read once: the budget file (AEGIS_BUDGET_FILE), AEGIS_* variables over it."""
    configured = settings()
    file = path or configured.budget_file
    values = dict(read_mapping(Path(file), what="budget policy")) if file else {}
    for key in (*BUDGET_KEYS, *SCOPE_LIMIT_KEYS):
        if getattr(configured, key) is not None:
            values[key] = getattr(configured, key)
    return values


class CostBreakdown(BaseModel):
    """How an estimate was reached: every input it used, so a reviewer can check it."""

    model_config = ConfigDict(extra="forbid")

    gpu: str
    num_gpus: int = 1
    gpu_price_usd_per_sec: float
    gpu_memory_gb: float
    estimated_seconds: float
    effective_batch_size: int
    total_steps: int
    dataset_rows: int
    train_rows: int
    dataset_tokens: int
    train_tokens_per_epoch: int
    tokens_approximate: bool = False
    tokenizer: str
    total_params: int
    trainable_params: int
    flops: float
    tflops_effective: float
    utilisation: float
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    fits: bool
    dtype: str
    notes: list[str] = Field(default_factory=list)
    # None in records written before these were estimated.
    host_ram_gb: float | None = Field(
        default=None,
        ge=0,
        description="RAM of the machine that trains (all its processes); on cpu, the training memory.",
    )
    eval_memory_gb: float | None = Field(
        default=None,
        ge=0,
        description="Peak RAM of the eval phase, which runs on the CPU of the machine running aegis.",
    )
    step_seconds: float | None = Field(default=None, ge=0, description="One optimizer step (GPUs: modelled).")
    time_source: str = Field(
        default="modelled", description="'modelled', or how the time was measured (a probe of the real script)."
    )
    measured_precision: str | None = Field(
        default=None, description="The precision a probe measured fastest here; the run uses it (precision auto)."
    )


class CostEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    estimated_cost_usd: float = Field(ge=0)
    estimated_vram_gb: float = Field(ge=0)
    estimated_duration_min: float = Field(ge=0)
    cost_breakdown: CostBreakdown
    placement: Placement | None = Field(default=None, description="Where it runs; None before a job step placed it.")

    @property
    def fits(self) -> bool:
        return self.cost_breakdown.fits

    def estimate_hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


class RunEvent(BaseModel):
    """One line of the append-only event log."""

    model_config = ConfigDict(extra="forbid")

    timestamp: AwareUTC = Field(default_factory=lambda: datetime.now(UTC))
    phase: str
    status: EventStatus
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class ExecutionResult(BaseModel):
    """What one training attempt really did, read from its own logs."""

    model_config = ConfigDict(extra="forbid")

    status: AttemptStatus
    failure_class: FailureClass | None = None
    error_message: str | None = None
    exit_code: int | None = None
    executor: str = Field(default="local", description="The backend that ran it (tools.run.backend).")
    isolation: Isolation | None = Field(default=None, description="What contained it; None in records before this.")
    gpu: str = "cpu"
    num_gpus: int = 1
    loss_curve: list[tuple[int, float]] = Field(default_factory=list)
    initial_train_loss: float | None = None
    final_train_loss: float | None = None
    initial_eval_loss: float | None = None
    final_eval_loss: float | None = None
    steps_completed: int = 0
    total_steps: int = 0
    resumed_from_step: int = Field(default=0, ge=0, description="Steps taken from a checkpoint, not trained here.")
    train_tokens: int = 0
    duration_s: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory_mb: float = Field(default=0.0, description="MiB (2**20 bytes), as the script measures it.")
    actual_cost_usd: float = 0.0
    estimated_gpu_cost_usd: float | None = None
    output_dir: str | None = None
    log_path: str | None = None

    @property
    def peak_memory_gb(self) -> float:
        """The peak in the estimator's unit (1e9 bytes), so the two compare: MiB / 1024 would be GiB, 7% less."""
        return self.peak_memory_mb * 2**20 / 1e9


class EvalCheck(BaseModel):
    """One eval check; a warning is shown beside the others but never fails a run."""

    model_config = ConfigDict(extra="forbid")

    name: str
    passed: bool
    value: float | str | None = None
    threshold: float | str | None = None
    detail: str = ""
    severity: Literal["gate", "warning"] = "gate"


class EvalResult(BaseModel):
    """passed: every gate check passed; generations: held-out rows, scored; general: the forgetting set's rows."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    checks: list[EvalCheck]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    generations: list[dict[str, Any]] = Field(default_factory=list)
    general: list[dict[str, Any]] = Field(default_factory=list)

    @staticmethod
    def gates_pass(checks: list[EvalCheck]) -> bool:
        """The verdict of a list of checks: the AND of the gate checks only."""
        return all(c.passed for c in checks if c.severity == "gate")


def stable_hash(payload: Any) -> str:
    """A short hash of canonical JSON: what an approval is bound to."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_validation_error(exc: ValidationError, what: str = "spec") -> list[str]:
    """Turn pydantic's errors into one plain line per field."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or what
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known field" + _did_you_mean(str(err["loc"][-1]) if err["loc"] else "")
        elif err["type"] == "missing":
            msg = "is required"
        problems.append(f"{what} field '{field}' {msg}" if field != what else f"{what}: {msg}")
    return problems


def _did_you_mean(name: str) -> str:
    """' (did you mean 'seq_len'?)' for a misspelt field of a spec, a budget or a record; '' when nothing is close."""
    known = {f for model in (TrainingSpec, BudgetPolicy) for f in model.model_fields}
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_spec(data: dict[str, Any]) -> TrainingSpec:
    try:
        return TrainingSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


def load_spec(path: str | os.PathLike[str]) -> TrainingSpec:
    """Load a spec from YAML or JSON, reporting every invalid field at once."""
    return parse_spec(read_mapping(Path(path), what="spec"))
