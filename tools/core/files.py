"""Reading a small YAML or JSON file of field: value (a spec, a budget policy): every failure one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tools.core.errors import SpecError

MAX_CONFIG_BYTES = 256 * 1024


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping a config file holds, or a SpecError naming the file and what is wrong with it."""
    try:
        if not path.is_file():
            raise SpecError([f"{what} file '{path}' does not exist (or is not a file)"])
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise SpecError([f"{what} file '{path}' is over {MAX_CONFIG_BYTES // 1024} KB; a {what} is a few lines"])
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise SpecError([f"{what} file '{path}' cannot be read: {reason}"]) from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            [f"{what} file '{path}' is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{what} file '{path}' is not valid YAML: {yaml_problem(exc)}"]) from None
    except RecursionError:
        raise SpecError([f"{what} file '{path}' is not usable {kind}: nested too deeply"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{what} file '{path}' must hold a mapping of field: value"])
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, as a person fixing the file wants it: 'line 3, column 9: mapping values are not allowed'."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
