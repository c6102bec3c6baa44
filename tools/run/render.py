"""Render the training script and its config for one attempt.

The script is assembled from the modules of tools/recipe/ (the training program the tests import):
each module's text in dependency order, its imports gathered once at the top, so a reviewer reads one
self-contained file that imports nothing from Aegis. The template takes no spec values at all.
Everything that varies (the spec, paths, precision) goes to config.json, which the script reads at
run time, so no model name or path can ever become code.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from tools.core.catalog import get_gpu
from tools.core.errors import AegisError
from tools.core.paths import TEMPLATES_DIR
from tools.core.spec import Precision, TrainingSpec
from tools.recipe.config import ADAPTER_FILES_WORDS, adapter_weights
from tools.recipe.precision import PRECISIONS, cpu_supports_bf16, resolve_precision

TEMPLATE_NAME = "train.py.j2"
RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipe"
RECIPE_PACKAGE = "tools.recipe"
# The script's sections, each after the modules it imports from (render checks it).
RECIPE_MODULES = (
    "exits",
    "precision",
    "formatting",
    "config",
    "data",
    "lora",
    "packing",
    "checkpoint",
    "sharding",
    "program",
)
# The only run-time knobs a caller may add beside the spec. Closed on purpose: a knob that fakes
# a failure (say, "nan_after_step") has no place in a script that runs on real money.
EXTRA_KEYS = ("max_steps", "checkpoint_every", "resume_from", "init_adapter", "precision")


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


def decide_precision(spec: TrainingSpec, device: str) -> Precision:
    """The recipe's precision rule, applied with the catalog's word on the target GPU (or this CPU's flags)."""
    bf16 = get_gpu(spec.target_gpu).bf16_supported if device == "cuda" else cpu_supports_bf16()
    return resolve_precision(spec.precision, device, bf16_supported=bf16)


@dataclass(frozen=True)
class RecipeSection:
    """One recipe module as the script holds it: its text less its imports, which the script gathers at the top."""

    path: str
    body: str


def _stdlib_import(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The import as it will stand in the script's import block; only the standard library may be imported there."""
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
    for name in names:
        if name.split(".")[0] not in sys.stdlib_module_names:
            raise AegisError(
                f"tools/recipe/{module}.py imports '{name}' at the top: only the standard library may be imported "
                "there (torch and friends inside functions), so the script can be checked without them"
            )
    if isinstance(node, ast.ImportFrom):
        return [f"from {node.module} import {ast.unparse(alias)}" for alias in node.names]
    return [f"import {ast.unparse(alias)}" for alias in node.names]


def _section(module: str, defined: set[str], imports: set[str]) -> RecipeSection:
    """One module's text without its imports; its imports join `imports`, its top-level names join `defined`."""
    source = (RECIPE_DIR / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    dropped: set[int] = set()
    own: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            dropped.update(range(node.lineno - 1, node.end_lineno or node.lineno))
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(RECIPE_PACKAGE + "."):
                missing = [a.name for a in node.names if a.name not in defined]
                if missing:
                    raise AegisError(f"tools/recipe/{module}.py uses {missing} before the module that defines them")
                continue
            imports.update(_stdlib_import(node, module))
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            own.update(t.id for t in targets if isinstance(t, ast.Name))
    clash = sorted(own & defined)
    if clash:
        raise AegisError(f"tools/recipe/{module}.py defines {clash} again; the script is one namespace")
    defined.update(own)
    lines = [line for number, line in enumerate(source.splitlines()) if number not in dropped]
    body = re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines)).strip() + "\n"
    return RecipeSection(path=f"tools/recipe/{module}.py", body=body)


def _import_block(imports: set[str]) -> str:
    """Standard-library imports in the order ruff's isort wants: plain imports, then from-imports, each sorted."""
    plain = sorted((i for i in imports if i.startswith("import ")), key=str.lower)
    merged: dict[str, set[str]] = {}
    for line in imports - set(plain):
        module, name = line.removeprefix("from ").split(" import ")
        merged.setdefault(module, set()).add(name)

    def member_order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    froms = [f"from {m} import {', '.join(sorted(merged[m], key=member_order))}" for m in sorted(merged, key=str.lower)]
    return "\n".join(plain + froms)


def recipe_sections() -> tuple[str, list[RecipeSection]]:
    """The script's import block and its sections, in RECIPE_MODULES order."""
    defined: set[str] = set()
    imports: set[str] = set()
    sections = [_section(module, defined, imports) for module in RECIPE_MODULES]
    return _import_block(imports), sections


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_source() -> str:
    """The script's text: it is the same for every spec."""
    imports, sections = recipe_sections()
    return _environment().get_template(TEMPLATE_NAME).render(imports=imports, sections=sections)


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
    checked["init_adapter"] = _check_init_adapter(extra.get("init_adapter"))
    precision = extra.get("precision")
    if precision is not None and precision not in PRECISIONS[1:]:
        raise AegisError(f"run option 'precision' must be one of {', '.join(PRECISIONS[1:])}, got {precision!r}")
    checked["precision"] = precision
    return checked


def _check_init_adapter(adapter: Any) -> str | None:
    """A warm start's adapter folder, absolute; one that does not hold a saved adapter is refused here."""
    if adapter is None:
        return None
    folder = Path(adapter).expanduser().resolve() if isinstance(adapter, str | Path) and adapter else None
    if folder is None or adapter_weights(folder) is None:
        raise AegisError(
            f"run option 'init_adapter': '{adapter}' is not an adapter folder (needs {ADAPTER_FILES_WORDS})"
        )
    return str(folder)


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
        "precision": options["precision"] or decide_precision(spec, device),
        "max_steps": options["max_steps"] if options["max_steps"] is not None else spec.max_steps,
        "checkpoint_every": options["checkpoint_every"],
        "resume_from": options["resume_from"],
        "init_adapter": options["init_adapter"],
        "extra": dict(extra or {}),
    }
    script_path = workdir / "train.py"
    config_path = workdir / "config.json"
    script_path.write_text(render_source(), encoding="utf-8")
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return RenderedScript(script_path=script_path, config_path=config_path, config=config)
