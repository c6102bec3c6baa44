"""Render the training script and its config for one attempt.

The template takes no spec values at all: it is fixed code plus the verbatim source of
tools/recipe/formatting.py. Everything that varies (the spec, paths, precision) goes to config.json,
which the script reads at run time, so no model name or path can ever become code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from tools.core.catalog import get_gpu
from tools.core.errors import AegisError
from tools.core.paths import TEMPLATES_DIR
from tools.core.spec import Precision, TrainingSpec
from tools.recipe import formatting
from tools.run.failures import EXIT_CODES

TEMPLATE_NAME = "train.py.j2"
# The only run-time knobs a caller may add beside the spec. Closed on purpose: a knob that fakes
# a failure (say, "nan_after_step") has no place in a script that runs on real money.
EXTRA_KEYS = ("max_steps", "checkpoint_every", "resume_from")


class RenderedScript(BaseModel):
    """The files of one rendered attempt and the config they hold."""

    model_config = ConfigDict(extra="forbid")

    script_path: Path
    config_path: Path
    config: dict[str, Any]

    @classmethod
    def from_paths(cls, script_path: Path, config_path: Path) -> RenderedScript:
        """Re-open an attempt rendered earlier (the config is read back from its file)."""
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        return cls(script_path=Path(script_path), config_path=Path(config_path), config=config)

    @property
    def workdir(self) -> Path:
        return self.script_path.parent

    @property
    def output_dir(self) -> Path:
        return Path(self.config["output_dir"])

    @property
    def metrics_path(self) -> Path:
        return Path(self.config["metrics_path"])


def cpu_supports_bf16() -> bool:
    """bf16 is worth it on a CPU only with native instructions (avx512_bf16 or AMX); emulated it is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def decide_precision(spec: TrainingSpec, device: str) -> Precision:
    """The spec's precision, or for 'auto': bf16 where the hardware has it, else fp16 (GPU) or fp32 (CPU)."""
    if spec.precision != "auto":
        return spec.precision
    if device == "cuda":
        return "bf16" if get_gpu(spec.target_gpu).bf16_supported else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def formatting_source() -> str:
    """tools/recipe/formatting.py as it is, less its __future__ import (the script has its own at the top)."""
    text = Path(formatting.__file__).read_text(encoding="utf-8")
    return text.replace("from __future__ import annotations\n", "", 1).strip() + "\n"


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_source() -> str:
    """The script's text: it is the same for every spec."""
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(exit_codes=EXIT_CODES, formatting_source=formatting_source())


def _check_extra(extra: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(extra) - set(EXTRA_KEYS))
    if unknown:
        raise AegisError(f"unknown run option(s) {', '.join(unknown)}; allowed: {', '.join(EXTRA_KEYS)}")
    checked: dict[str, Any] = {}
    for key in ("max_steps", "checkpoint_every"):
        value = extra.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise AegisError(f"run option '{key}' must be a positive integer, got {value!r}")
        checked[key] = value
    resume = extra.get("resume_from")
    if resume is not None:
        folder = Path(resume).expanduser().resolve()
        if not (folder / "state.json").is_file():
            raise AegisError(f"run option 'resume_from': '{resume}' is not a checkpoint folder (no state.json)")
        resume = str(folder)
    checked["resume_from"] = resume
    return checked


def render_script(
    spec: TrainingSpec,
    workdir: Path,
    *,
    model_path: str,
    dataset_path: Path,
    eval_dataset_path: Path | None,
    device: str = "cpu",
    extra: dict[str, Any] | None = None,
) -> RenderedScript:
    """Write workdir/train.py and workdir/config.json for one attempt."""
    if device not in ("cpu", "cuda"):
        raise AegisError(f"device must be 'cpu' or 'cuda', got '{device}'")
    options = _check_extra(extra or {})
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "spec": spec.model_dump(mode="json"),
        "model_path": model_path,
        "dataset_path": str(Path(dataset_path).resolve()),
        "eval_dataset_path": str(Path(eval_dataset_path).resolve()) if eval_dataset_path else None,
        "output_dir": str(workdir / "output"),
        "metrics_path": str(workdir / "metrics.jsonl"),
        "device": device,
        "precision": decide_precision(spec, device),
        "max_steps": options["max_steps"] if options["max_steps"] is not None else spec.max_steps,
        "checkpoint_every": options["checkpoint_every"],
        "resume_from": options["resume_from"],
        "extra": dict(extra or {}),
    }
    script_path = workdir / "train.py"
    config_path = workdir / "config.json"
    script_path.write_text(render_source(), encoding="utf-8")
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return RenderedScript(script_path=script_path, config_path=config_path, config=config)
