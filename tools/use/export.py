"""Ship a run's model: a self-contained folder another machine can load, with a model card that says what it is.

The folder holds the adapter (``base_model_name_or_path`` set to the base model's real id, not this machine's cache
path) or the full model, the tokenizer, a model card (README.md) and the same facts as JSON (aegis_run.json).
With ``merge`` the adapter is folded into the base weights and the folder holds plain safetensors weights that
``transformers`` loads without PEFT (the adapter is kept in ``adapter/``). GGUF (and an Ollama Modelfile) is made
by llama.cpp's converter when one is installed; otherwise the error says what to install. The merge loads the
model, so it runs in a sandboxed worker (tools.use.model_worker); this process only copies files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError, DataError
from tools.core.isolation import Isolation, IsolationFacts
from tools.core.settings import settings
from tools.evals.sandboxed import model_folder, worker_command, worker_failure
from tools.inputs.local_models import resolve_model
from tools.report.provenance import provenance
from tools.run.local import kill_group
from tools.run.sandbox import UNISOLATED_HOME, Mounts, paths_of, start_contained
from tools.use.card import base_model_id, card_facts, card_json, render_card
from tools.use.protocol import MergeRequest
from tools.use.runs import RunRecord

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
SKIP = {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "README.md"}
CONVERTER_NAMES = ("convert_hf_to_gguf.py", "convert-hf-to-gguf")
GGUF_HELP = (
    "GGUF needs llama.cpp's converter, which does not install from PyPI: "
    "`git clone https://github.com/ggml-org/llama.cpp && pip install -r llama.cpp/requirements/"
    "requirements-convert_hf_to_gguf.txt`, then set AEGIS_GGUF_CONVERTER=llama.cpp/convert_hf_to_gguf.py "
    "(or put convert_hf_to_gguf.py on PATH) and export again; the merged safetensors export works without it"
)


class ExportResult(BaseModel):
    """What `aegis export` wrote."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    folder: str
    kind: str = Field(description="adapter, merged or full")
    base_model: str | None
    files: list[str]
    gguf: str | None = None
    modelfile: str | None = None
    isolation: Isolation | None = Field(default=None, description="What contained the merge (merged exports only).")


def default_export_dir(run: RunRecord, merged: bool) -> Path:
    return run.folder.root / ("export-merged" if merged else "export")


def gguf_converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py: AEGIS_GGUF_CONVERTER, else on PATH; a clear error when there is none."""
    configured = settings().gguf_converter
    if configured is not None:
        path = Path(configured).expanduser()
        if path.is_file():
            return path
        raise DataError(f"AEGIS_GGUF_CONVERTER '{configured}' is not a file; {GGUF_HELP}")
    for name in CONVERTER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise DataError(GGUF_HELP)


def _prepare_dest(dest: Path, force: bool) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if not force:
            raise DataError(f"'{dest}' already exists and is not empty; choose another --out or add --force")
        if not (dest / "aegis_run.json").is_file():
            raise DataError(f"'{dest}' is not an Aegis export folder; --force only replaces an earlier export")
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)


def _copy_model_files(final: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in final.iterdir():
        if item.is_file() and item.name not in SKIP and not item.name.startswith("checkpoint"):
            shutil.copy2(item, dest / item.name)


def _fix_adapter_config(folder: Path, base_id: str) -> None:
    """Point the adapter at the base model's real id instead of the path it was trained from on this machine."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _copy_tokenizer(source: Path, dest: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (dest / name).exists():
            shutil.copy2(source / name, dest / name)


def merge_adapter(base_path: str, adapter_dir: Path, dest: Path, trust_remote_code: bool = False) -> IsolationFacts:
    """Fold the LoRA adapter into the base weights (fp32) and save safetensors weights with the tokenizer in ``dest``.

    The merge loads the model, so it runs in a sandboxed worker (tools.use.model_worker) that sees the base and
    the adapter read-only and writes only ``dest``, the export's work folder. Raises IsolationRefused, with nothing
    started, where the model's own code must run isolated and cannot be.
    """
    dest = dest.resolve()  # the sandbox binds real folders, not the links to them
    request = MergeRequest(
        base_path=model_folder(base_path),
        adapter_dir=str(adapter_dir.resolve()),
        dest=str(dest),
        trust_remote_code=trust_remote_code,
    )
    mounts = Mounts(
        read_only=paths_of([request.adapter_dir, request.base_path]), writable=(dest,), remote_code=trust_remote_code
    )
    cmd = worker_command("tools.use.model_worker", "merge", request.model_dump_json())
    with tempfile.TemporaryFile() as log:
        contained = start_contained(cmd, mounts, cwd=dest, stdout=log)
        try:
            contained.proc.wait()
        finally:
            kill_group(contained.proc)
        shutil.rmtree(dest / UNISOLATED_HOME, ignore_errors=True)  # unisolated, its HOME was made in dest
        if contained.proc.returncode != 0:
            log.seek(0)
            said = log.read().decode("utf-8", errors="replace")
            raise worker_failure("merging the adapter into the base", said, contained.proc.returncode)
    return contained.isolation


def export_run(
    run: RunRecord, dest: Path | None = None, *, merge: bool = False, gguf: bool = False, force: bool = False
) -> ExportResult:
    """Write the run's model, card and facts to ``dest`` (default: the run's export/ or export-merged/ folder).

    The folder is built beside ``dest`` and moved into place whole, so a failed export leaves nothing half-written.
    """
    spec = run.require_spec()
    final = run.final_dir()
    converter = gguf_converter() if gguf else None  # refuse before writing anything
    is_adapter = (final / "adapter_config.json").is_file()
    merged = merge and is_adapter
    dest = (dest or default_export_dir(run, merged)).expanduser().resolve()
    _prepare_dest(dest, force)
    work = dest.with_name(dest.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    try:
        isolation = _write_model(run, final, work, merged=merged, is_adapter=is_adapter)
        if dest.exists():
            dest.rmdir()  # empty: _prepare_dest saw to it
        work.replace(dest)
    except OSError as exc:
        raise AegisError(f"the export to '{dest}' could not be written: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = ExportResult(
        run_id=run.run_id,
        folder=str(dest),
        kind="merged" if merged else ("adapter" if is_adapter else "full"),
        base_model=base_model_id(spec.model_name),
        files=sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()),
        isolation=isolation.kind if isolation is not None else None,
    )
    if converter is not None:
        result = _to_gguf(converter, dest, result, merged or not is_adapter)
    return result


def _write_model(run: RunRecord, final: Path, work: Path, *, merged: bool, is_adapter: bool) -> IsolationFacts | None:
    """The model files, the tokenizer, the model card and its facts, in ``work``; what contained the merge, if any."""
    spec = run.require_spec()
    base_id = base_model_id(spec.model_name) or spec.model_name
    base_path = resolve_model(spec.model_name).path
    work.mkdir(parents=True)
    isolation = None
    if merged:
        isolation = merge_adapter(base_path, final, work, spec.trust_remote_code)
        _copy_model_files(final, work / "adapter")
        _fix_adapter_config(work / "adapter", base_id)
    else:
        _copy_model_files(final, work)
        if is_adapter:
            _fix_adapter_config(work, base_id)
    _copy_tokenizer(final if (final / "tokenizer_config.json").is_file() else Path(base_path), work)
    facts = card_facts(run, provenance(), merged=merged)
    (work / "README.md").write_text(render_card(facts), encoding="utf-8")
    (work / "aegis_run.json").write_text(card_json(facts), encoding="utf-8")
    return isolation


def _to_gguf(converter: Path, dest: Path, result: ExportResult, has_weights: bool) -> ExportResult:
    """Convert the exported weights with llama.cpp's converter and write an Ollama Modelfile beside them."""
    if not has_weights:
        raise DataError("GGUF holds whole weights: export with --merge --gguf (an adapter alone is not a model)")
    out = dest / "model-f16.gguf"
    cmd = [sys.executable, str(converter), str(dest), "--outfile", str(out), "--outtype", "f16"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AegisError(f"the GGUF converter {converter} failed: {tail[0][:300]}")
    modelfile = dest / "Modelfile"
    modelfile.write_text(
        f"# Ollama: ollama create {result.run_id} -f Modelfile\nFROM ./{out.name}\nPARAMETER temperature 0\n",
        encoding="utf-8",
    )
    files = sorted({*result.files, out.name, modelfile.name})
    return result.model_copy(update={"gguf": str(out), "modelfile": str(modelfile), "files": files})
