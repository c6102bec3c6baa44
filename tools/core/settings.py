"""Every AEGIS_* variable in one place: one pydantic-settings class, read fresh on each call.

An operator sets these in the environment of the process (the CLI, the chat server, CI). A value that
does not parse is one line naming the variable and what it wants, never a traceback and never a silent
default. Read fresh so a test, or a long-lived server whose environment is changed, sees what is set now.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tools.core.errors import AegisError

ENV_PREFIX = "AEGIS_"


class Settings(BaseSettings):
    """The operator's configuration of Aegis-ML (each field is the variable AEGIS_<FIELD NAME>)."""

    # An empty variable means "not set": AEGIS_UI_USERS= must not turn sign-in on with the path ".".
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True)

    # Where things are
    home: Path = Field(default=Path.home() / ".cache" / "aegis", description="caches that outlive a run")
    runs_dir: Path | None = Field(default=None, description="runs/<run_id>/ folders; default ./runs")
    model_cache: Path | None = Field(default=None, description="converted and built models; default HOME/models")
    data_dirs: str | None = Field(default=None, description="os.pathsep-separated folders specs may read")
    spend_db: Path | None = Field(default=None, description="the spend store; default HOME/spend.sqlite")
    database_url: str | None = Field(
        default=None, description="postgresql://… : the spend store, checkpoints and UI threads several servers share"
    )
    preflight_cache: Path | None = Field(default=None, description="smoke-run results; default HOME/preflight")
    eval_config: Path | None = Field(default=None, description="eval thresholds as YAML/JSON")
    eval_rows: int | None = Field(default=None, ge=1, le=10_000, description="held-out rows the evals measure")
    eval_generations: int | None = Field(default=None, ge=1, le=50, description="prompts both models answer")
    eval_new_tokens: int | None = Field(default=None, ge=4, le=1024, description="longest answer generated in evals")

    # Tracking finished runs (LangSmith traces the agent's turns; see the README)
    tracking: str = Field(default="mlflow,tensorboard", description="mlflow, tensorboard, both, or off")
    mlflow_tracking_uri: str | None = Field(default=None, description="default sqlite:///RUNS_DIR/mlflow.db")
    mlflow_experiment: str = Field(default="aegis-ml", min_length=1, max_length=200)

    # Shipping a trained model (aegis export / push); the Hub token is huggingface_hub's own (HF_TOKEN, hf auth login)
    gguf_converter: Path | None = Field(default=None, description="llama.cpp's convert_hf_to_gguf.py")
    hub_endpoint: str | None = Field(default=None, description="the Hub API; default HF_ENDPOINT or huggingface.co")

    # The budget (BudgetPolicy.from_config reads these, over a budget file)
    budget_file: Path | None = None
    max_budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    soft_threshold_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    allow_auto_approve: bool | None = None
    person_day_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="per person per day")
    person_month_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="per person per month")
    install_day_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="all persons, per day")
    install_month_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="all, per month")
    user: str | None = Field(
        default=None, min_length=1, max_length=64, description="the person CLI spending counts under; default OS user"
    )
    local_price_usd_per_hour: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="what this machine costs: local runs are priced with it"
    )

    # Runs
    local_timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_loss_share: float = Field(default=0.1, gt=0, le=1, description="checkpoint every this share of a run")
    max_dataset_mb: float = Field(default=512, gt=0, allow_inf_nan=False)
    modal_secrets: str = Field(default="", description="comma-separated Modal Secret names")
    backend_plugins: str = Field(default="", description="more backends, comma-separated module:Class names")
    backend: str = Field(default="auto", description="where training runs: auto (by the spec's target) or a name")
    bwrap: Path | None = Field(default=None, description="the bubblewrap binary; default bwrap on PATH")
    require_isolation: bool = Field(default=False, description="refuse every run that cannot be isolated")

    # The agent
    model: str = Field(default="offline", description="offline, or openai:MODEL")
    model_timeout_s: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, description="seconds a chat model call may take; not retried after"
    )
    trace_flush_timeout_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    eval_dataset: str = Field(default="aegis-agent-scenarios", min_length=1)
    ui_users: Path | None = Field(default=None, description="name:scrypt-hash lines; turns on sign-in")
    ui_operators: str = Field(default="", description="comma-separated signed-in users who see the spend report")
    ui_origins: str = Field(default="", description="extra origins the chat may be reached from")


def settings() -> Settings:
    """The settings as the environment holds them now; a bad value is an AegisError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(part) for part in err["loc"]).upper()
            problems.append(f"{name} {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})")
        raise AegisError("; ".join(problems)) from None
