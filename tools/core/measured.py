"""A time measured on the machine that will train, for the estimator to use instead of its model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MeasuredTime(BaseModel):
    """What a probe of the real script on the real model measured: one optimizer step and the fixed start."""

    model_config = ConfigDict(extra="forbid")

    step_seconds: float = Field(gt=0, description="One optimizer step of the spec as given (all its micro-batches).")
    startup_seconds: float = Field(ge=0, description="Process start, imports, data, model load, save.")
    precision: str = Field(description="The precision the measured steps ran in.")
    source: str = Field(description="How and where it was measured, for the person approving.")
    took_seconds: float = Field(default=0.0, ge=0, description="Wall time the measurement itself took.")
