"""The estimator's must-shows: exact parameter counts, memory ordering and fit, cost proportional to work."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from tests.stand_ins import shipped_estimate as estimate
from tools.core.catalog import get_gpu
from tools.core.errors import ModelError
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.inputs.local_models import resolve_model
from tools.inputs.model_config import (
    count_parameters,
    default_lora_targets,
    hub_id,
    load_model_config,
    lora_trainable_params,
    model_stats,
)
from tools.inputs.prepared import prepare
from tools.plan.calibration import CALIBRATION
from tools.plan.estimator import estimate as price_spec
from tools.plan.estimator import startup_seconds
from tools.plan.memory import ScriptTraits, checkpoint_dtype, model_load_gb
from tools.plan.timing import step_time
from tools.report.presenters import format_estimate_table


def stats(rows: int = 20_000, tokens_per_row: int = 400, seq_len: int = 512) -> DatasetStats:
    return DatasetStats(
        rows=rows,
        format="text",
        tokens=rows * tokens_per_row,
        mean_tokens_per_row=tokens_per_row,
        max_tokens_per_row=tokens_per_row,
        truncated_rows=0,
        seq_len=seq_len,
        approximate=False,
        tokenizer="test",
    )


def prepared_estimate(spec: TrainingSpec, folder: Path) -> CostEstimate:
    """The estimate of a spec whose data is read the one way a job reads it."""
    prepared = prepare(spec, folder)
    return price_spec(spec, dataset_stats=prepared.data.stats, model_config=prepared.config())


def spec(**fields) -> TrainingSpec:
    return TrainingSpec(**{"model_name": "meta-llama/Llama-2-7b-hf", "dataset_path": "d.jsonl", **fields})


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("meta-llama/Llama-2-7b-hf", 6.74e9),
        ("meta-llama/Meta-Llama-3-8B", 8.03e9),
        ("mistralai/Mistral-7B-v0.1", 7.24e9),
        ("Qwen/Qwen2.5-0.5B", 0.49e9),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1.10e9),
        ("gpt2", 124e6),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 135e6),
    ],
)
def test_parameter_counts_match_published(name: str, published: float) -> None:
    assert count_parameters(load_model_config(name)) == pytest.approx(published, rel=0.01)


def test_aliases_and_case_resolve_to_the_shipped_config() -> None:
    assert hub_id("llama-2-7b") == "meta-llama/Llama-2-7b-hf"
    assert count_parameters(load_model_config("LLAMA-2-7B")) == count_parameters(load_model_config("llama-2-7b-hf"))


def test_unknown_model_offline_lists_known_models() -> None:
    with pytest.raises(ModelError, match="Offline, use one of: .*meta-llama/Llama-2-7b-hf"):
        load_model_config("nobody/no-such-model-xyz")


def test_local_folder_config(tmp_path: Path) -> None:
    values = json.loads((Path("tools/inputs/model_configs") / "gpt2.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**values, "n_layer": 2}))
    config = load_model_config(str(tmp_path))
    assert config.n_layer == 2
    assert count_parameters(config) < count_parameters(load_model_config("gpt2"))


def test_local_model_config_needs_no_build() -> None:
    config = load_model_config("local:smollm2-135m-instruct")
    assert count_parameters(config) == count_parameters(load_model_config("HuggingFaceTB/SmolLM2-135M-Instruct"))


def test_lora_params_from_real_shapes() -> None:
    llama = load_model_config("llama-2-7b")
    assert default_lora_targets(llama) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert lora_trainable_params(llama, ["q_proj", "k_proj", "v_proj", "o_proj"], 16) == 32 * 4 * 16 * (4096 + 4096)
    mistral = load_model_config("mistral-7b")  # grouped-query attention: k/v project to 1024
    assert lora_trainable_params(mistral, ["k_proj"], 8) == 32 * 8 * (4096 + 1024)
    gpt2 = load_model_config("gpt2")  # Conv1D layers; c_proj names both the attention and the MLP output
    assert default_lora_targets(gpt2) == ["c_attn", "c_proj"]
    assert lora_trainable_params(gpt2, ["c_attn", "c_proj"], 8) == 12 * 8 * ((768 + 2304) + (768 + 768) + (3072 + 768))
    with pytest.raises(ModelError, match="match no layer"):
        lora_trainable_params(llama, ["query"], 8)


def test_full_finetune_of_llama2_7b_does_not_fit_an_a10g() -> None:
    est = estimate(spec(method="full_finetune"), "a10g", dataset_stats=stats())
    b = est.cost_breakdown
    assert not est.fits and est.estimated_vram_gb > 24
    assert b.weights_gb + b.gradients_gb + b.optimizer_gb == pytest.approx(16 * 6.738e9 / 1e9, rel=0.01)
    assert any("does not fit" in note and "a10g" in note for note in b.notes)
    assert est.estimated_vram_gb == pytest.approx(
        b.weights_gb + b.gradients_gb + b.optimizer_gb + b.activations_gb + b.overhead_gb
    )


def test_qlora_uses_less_memory_than_lora_than_full() -> None:
    vram = {
        m: estimate(spec(method=m), "a100-80gb", dataset_stats=stats()).estimated_vram_gb
        for m in ("qlora", "lora", "full_finetune")
    }
    assert vram["qlora"] < vram["lora"] < vram["full_finetune"]
    assert estimate(spec(method="qlora"), "a10g", dataset_stats=stats()).fits


def test_doubling_epochs_doubles_the_variable_cost() -> None:
    """Startup is a fixed cost of every run; the rest is proportional to the work."""
    data = stats()
    config = load_model_config("llama-2-7b")
    fixed = startup_seconds(model_stats(config), "a10g") * get_gpu("a10g").price_usd_per_sec
    one, two, three = (
        estimate(spec(method="qlora", num_epochs=e), "a10g", dataset_stats=data, model_config=config).estimated_cost_usd
        for e in (1, 2, 3)
    )
    assert two - fixed == pytest.approx(2 * (one - fixed), rel=0.01)
    assert three - two == pytest.approx(two - one, rel=0.01)
    assert fixed < 0.05 * one  # the fixed part is a small share, so total cost also roughly doubles
    assert two / one == pytest.approx(2, rel=0.05)


def test_slower_gpu_takes_longer_and_its_compute_in_proportion_to_throughput() -> None:
    config = load_model_config("llama-2-7b")
    stats_ = model_stats(config)
    lora = spec(method="lora")
    steps = {
        g: step_time(lora, get_gpu(g), stats_, 4_000_000, throughput_factor=1.0, sharded=False)
        for g in ("a100-80gb", "h100")
    }
    assert steps["a100-80gb"].compute_s / steps["h100"].compute_s == pytest.approx(
        get_gpu("h100").bf16_tflops / get_gpu("a100-80gb").bf16_tflops, rel=1e-6
    )
    data = stats()
    run = {g: estimate(lora, g, dataset_stats=data, model_config=config) for g in ("a100-80gb", "h100")}
    assert run["a100-80gb"].cost_breakdown.estimated_seconds > run["h100"].cost_breakdown.estimated_seconds


def test_steps_tokens_packing_and_max_steps() -> None:
    data = stats(rows=1000, tokens_per_row=128, seq_len=512)
    packed = estimate(spec(micro_batch_size=4, gradient_accumulation_steps=2, num_epochs=2), dataset_stats=data)
    b = packed.cost_breakdown
    assert (b.train_rows, b.train_tokens_per_epoch, b.effective_batch_size) == (900, 900 * 128, 8)
    assert b.total_steps == 2 * -(-(900 * 128 // 512) // 8)  # 225 sequences -> 29 steps per epoch
    padded = estimate(spec(packing=False, micro_batch_size=4, gradient_accumulation_steps=2), dataset_stats=data)
    assert padded.cost_breakdown.train_tokens_per_epoch == 900 * 512
    assert padded.cost_breakdown.total_steps == 3 * -(-900 // 8)
    assert padded.estimated_cost_usd > packed.estimated_cost_usd
    capped = estimate(spec(max_steps=5), dataset_stats=data)
    assert capped.cost_breakdown.total_steps == 5
    assert any("max_steps" in note for note in capped.cost_breakdown.notes)
    separate_eval = estimate(spec(eval_dataset_path="eval.jsonl"), dataset_stats=data)
    assert separate_eval.cost_breakdown.train_rows == 1000


def test_gradient_checkpointing_trades_memory_for_compute() -> None:
    data = stats()
    plain = estimate(spec(method="full_finetune"), "h100", dataset_stats=data).cost_breakdown
    ckpt = estimate(spec(method="full_finetune", gradient_checkpointing=True), "h100", dataset_stats=data)
    assert ckpt.cost_breakdown.activations_gb < plain.activations_gb / 4
    assert ckpt.cost_breakdown.flops / plain.flops == pytest.approx(4 / 3, rel=0.05)


def test_multi_gpu_cost_and_memory() -> None:
    data = stats()
    one = estimate(spec(method="lora"), "a100-80gb", dataset_stats=data)
    four = estimate(spec(method="lora", num_gpus=4), "a100-80gb", dataset_stats=data)
    b = four.cost_breakdown
    assert four.estimated_vram_gb == pytest.approx(one.estimated_vram_gb)  # data parallel: a full replica each
    assert four.estimated_cost_usd == pytest.approx(b.estimated_seconds * b.gpu_price_usd_per_sec * 4)
    assert four.estimated_duration_min < one.estimated_duration_min
    assert four.estimated_cost_usd > one.estimated_cost_usd  # communication overhead costs money
    assert b.step_seconds > one.cost_breakdown.step_seconds  # each step also all-reduces the gradients


def test_fsdp_shards_a_full_finetune_that_one_replica_cannot_hold() -> None:
    """ "Full fine-tune Meta-Llama-3-8B on 8 H100s": 16 bytes a weight is 128 GB as a replica, 16 GB a shard."""
    data = stats()
    config = load_model_config("meta-llama/Meta-Llama-3-8B")
    full = {"model_name": "meta-llama/Meta-Llama-3-8B", "method": "full_finetune", "num_gpus": 8}
    replica = estimate(spec(**full, sharding="none"), "h100", dataset_stats=data, model_config=config)
    sharded = estimate(spec(**full, sharding="fsdp"), "h100", dataset_stats=data, model_config=config)
    assert not replica.fits and replica.estimated_vram_gb > 128
    assert sharded.fits and sharded.estimated_vram_gb < 80
    assert sharded.cost_breakdown.optimizer_gb == pytest.approx(replica.cost_breakdown.optimizer_gb / 8)
    assert any("FSDP full shard" in note for note in sharded.cost_breakdown.notes)


def test_fsdp_holds_the_root_unit_and_two_layers_gathered_in_the_weights_own_dtype() -> None:
    """Our script's FSDP2 has no MixedPrecisionPolicy: a full fine-tune gathers its fp32 master weights, and the root
    unit (embeddings, LM head) stays gathered through the step; ZeRO-3 (the published runs) gathers 16-bit modules."""
    data, config = stats(), load_model_config("meta-llama/Meta-Llama-3-8B")
    n = model_stats(config)
    job = spec(model_name="meta-llama/Meta-Llama-3-8B", method="full_finetune", num_gpus=8, sharding="fsdp")
    ours = estimate(job, "h100", dataset_stats=data, model_config=config).cost_breakdown
    root = n.total_params - n.layer_params
    two_layers = 2 * n.layer_params / n.num_layers
    assert root == 2 * 128_256 * 4096 + 4096  # embeddings, LM head (not tied) and the final norm
    assert ours.weights_gb == pytest.approx((n.total_params * 4 / 8 + (root + two_layers) * 4) / 1e9)
    pure = estimate(job.model_copy(update={"precision": "bf16_pure"}), "h100", dataset_stats=data, model_config=config)
    assert pure.cost_breakdown.weights_gb == pytest.approx(ours.weights_gb / 2)
    zero3 = ScriptTraits(gather_bytes=2.0, gathers_root=False)
    modules = estimate(job, "h100", dataset_stats=data, model_config=config, script=zero3).cost_breakdown
    assert modules.weights_gb == pytest.approx((n.total_params * 4 / 8 + two_layers * 2) / 1e9)


@pytest.mark.parametrize(("optimizer", "bytes_per_weight"), [("adamw", 8.0), ("adamw_8bit", 2.0 + 8 / 2048)])
def test_optimizer_state_bytes_follow_the_optimizer(optimizer: str, bytes_per_weight: float) -> None:
    est = estimate(spec(method="lora", optimizer=optimizer), "a100-80gb", dataset_stats=stats())
    b = est.cost_breakdown
    assert b.optimizer_gb == pytest.approx(b.trainable_params * bytes_per_weight / 1e9)


def test_pure_bf16_halves_a_full_finetunes_weight_states() -> None:
    mixed = estimate(spec(method="full_finetune"), "h100", dataset_stats=stats()).cost_breakdown
    pure = estimate(spec(method="full_finetune", precision="bf16_pure"), "h100", dataset_stats=stats()).cost_breakdown
    assert pure.weights_gb == pytest.approx(mixed.weights_gb / 2)
    assert pure.gradients_gb + pure.optimizer_gb == pytest.approx((mixed.gradients_gb + mixed.optimizer_gb) / 2)


def test_the_loss_upcast_of_16_bit_logits_is_counted_and_a_16_bit_loss_holds_half() -> None:
    """Our script's loss runs on fp32 copies of bf16 logits; a script whose loss stays 16-bit (DeepSpeed's engines,
    as the published reference runs were) keeps the same copies at half the bytes."""
    job = spec(method="lora", micro_batch_size=4, seq_len=2048)
    ours = estimate(job, "h100", dataset_stats=stats(seq_len=2048)).cost_breakdown
    loss16 = estimate(job, "h100", dataset_stats=stats(seq_len=2048), script=ScriptTraits(loss_upcast=False))
    vocab, tokens = 32_000, 4 * 2048
    copies = 1 + CALIBRATION.loss_logits_copies
    assert ours.activations_gb - loss16.cost_breakdown.activations_gb == pytest.approx(
        tokens * vocab * (4.0 - 2.0) * copies / 1e9
    )


def test_fp32_logits_need_no_upcast_copy() -> None:
    """On the CPU the logits are fp32 already: only the loss's copies are added, whatever the script's loss does."""
    job = spec(model_name="HuggingFaceTB/SmolLM2-135M-Instruct", target_gpu="cpu", micro_batch_size=2)
    ours = estimate(job, dataset_stats=stats(200)).cost_breakdown
    other = estimate(job, dataset_stats=stats(200), script=ScriptTraits(loss_upcast=False)).cost_breakdown
    assert ours.activations_gb == other.activations_gb


def test_the_optimizer_step_holds_one_temporary_per_weight_on_a_gpu_and_one_tensors_on_the_cpu() -> None:
    """torch's foreach AdamW (CUDA) makes one fp32 temporary per trainable weight at the step; on the CPU it steps one
    tensor at a time, so the CPU's slack on the states is its own measured share."""
    data = stats(200)
    full = spec(model_name="HuggingFaceTB/SmolLM2-135M-Instruct", method="full_finetune", precision="fp32")
    cpu = estimate(full.model_copy(update={"target_gpu": "cpu"}), dataset_stats=data).cost_breakdown
    gpu = estimate(full.model_copy(update={"target_gpu": "h100"}), dataset_stats=data).cost_breakdown
    states = cpu.weights_gb + cpu.gradients_gb + cpu.optimizer_gb
    assert states == pytest.approx(gpu.weights_gb + gpu.gradients_gb + gpu.optimizer_gb)
    process = CALIBRATION.cpu_process_gb + data.tokens * CALIBRATION.host_bytes_per_token / 1e9
    cpu_slack = cpu.overhead_gb - process - CALIBRATION.fragmentation * cpu.activations_gb
    gpu_slack = gpu.overhead_gb - CALIBRATION.cuda_context_gb - CALIBRATION.fragmentation * gpu.activations_gb
    temporaries = gpu.trainable_params * 4 / 1e9
    assert gpu_slack == pytest.approx(CALIBRATION.state_overhead * states + temporaries)
    assert cpu_slack == pytest.approx(CALIBRATION.cpu_state_overhead * states)


def test_an_optimizer_that_steps_a_sub_group_at_a_time_holds_only_its_temporaries() -> None:
    """DeepSpeed ZeRO-3 (the published reference runs) steps sub_group_size weights at a time; bitsandbytes' 8-bit
    AdamW steps each tensor in a fused kernel and makes no temporaries."""
    job, data = spec(method="full_finetune"), stats()
    ours = estimate(job, "h100", dataset_stats=data).cost_breakdown
    grouped = estimate(job, "h100", dataset_stats=data, script=ScriptTraits(optimizer_step_weights=1e9))
    assert ours.overhead_gb - grouped.cost_breakdown.overhead_gb == pytest.approx(
        (ours.trainable_params - 1e9) * 4 / 1e9
    )
    eight_bit = estimate(spec(method="full_finetune", optimizer="adamw_8bit"), "h100", dataset_stats=data)
    assert ours.overhead_gb - eight_bit.cost_breakdown.overhead_gb == pytest.approx(
        ours.trainable_params * 4 / 1e9
        + CALIBRATION.state_overhead * (ours.optimizer_gb - eight_bit.cost_breakdown.optimizer_gb)
    )


def test_cpu_keeps_fp32_weights_and_costs_nothing() -> None:
    est = estimate(spec(model_name="HuggingFaceTB/SmolLM2-135M-Instruct", target_gpu="cpu"), dataset_stats=stats(200))
    b = est.cost_breakdown
    assert est.estimated_cost_usd == 0.0 and b.utilisation == 1.0
    assert b.weights_gb == pytest.approx((134_515_008 + b.trainable_params) * 4 / 1e9)


def test_estimate_is_deterministic() -> None:
    first = estimate(spec(), dataset_stats=stats())
    assert estimate(spec(), dataset_stats=stats()).estimate_hash() == first.estimate_hash()


def test_a_prepared_spec_is_priced_from_the_real_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": "word " * (i + 10)}) + "\n" for i in range(40)), encoding="utf-8")
    est = prepared_estimate(spec(model_name="llama-2-7b", dataset_path=str(path), method="qlora"), tmp_path / "run")
    b = est.cost_breakdown
    assert b.dataset_rows == 40 and b.train_rows == 36
    assert b.tokens_approximate and any("approximate" in note for note in b.notes)
    assert b.dataset_tokens == sum(-(-len("word " * (i + 10)) // 4) + 1 for i in range(40))


def test_table_shows_cost_parts_and_limits() -> None:
    est = estimate(spec(method="full_finetune"), "a10g", dataset_stats=stats())
    console = Console(record=True, width=200)
    console.print(format_estimate_table(est, BudgetPolicy(max_budget_usd=3, soft_threshold_usd=1)))
    text = console.export_text()
    assert f"${est.estimated_cost_usd:,.2f}" in text and "Hard limit" in text and "$3.00" in text
    assert "optimizer" in text and "does not fit" in text and "6.74B total" in text


def test_a_prepared_spec_is_counted_with_the_built_local_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_model("local:tiny-llama")  # built on first use, as every test of the tiny model does
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": f"question {i}", "completion": "answer " * (i + 1)} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tiny = spec(model_name="local:tiny-llama", dataset_path=str(path), target_gpu="cpu", seq_len=64)
    est = prepared_estimate(tiny, tmp_path / "run")
    b = est.cost_breakdown
    assert not b.tokens_approximate and "tiny-llama" in b.tokenizer
    assert b.total_params == count_parameters(load_model_config("local:tiny-llama"))


def test_host_ram_on_a_gpu_machine_is_the_process_the_data_and_the_model_load() -> None:
    """Llama-2-7B ships fp16: LoRA converts it to bf16 on the host, full fine-tuning to fp32, QLoRA loads to the GPU."""
    n = count_parameters(load_model_config("llama-2-7b"))
    data = stats()
    fixed = CALIBRATION.cpu_process_gb + data.tokens * CALIBRATION.host_bytes_per_token / 1e9
    host = {
        m: estimate(spec(method=m), "a10g", dataset_stats=data).cost_breakdown.host_ram_gb
        for m in ("qlora", "lora", "full_finetune")
    }
    assert host["qlora"] == pytest.approx(fixed + n * 2 / 1e9)
    assert host["lora"] == pytest.approx(fixed + n * (2 + 2) / 1e9)
    assert host["full_finetune"] == pytest.approx(fixed + n * (2 + 4) / 1e9)
    assert all(value > CALIBRATION.cpu_process_gb for value in host.values())
    four = estimate(spec(method="lora", num_gpus=4), "a10g", dataset_stats=data).cost_breakdown
    assert four.host_ram_gb == pytest.approx(4 * host["lora"])  # torchrun: every process loads its own copy


def test_model_load_is_zero_copy_in_the_checkpoint_dtype() -> None:
    assert model_load_gb(10**9, "float32", "float32") == pytest.approx(4.0)
    assert model_load_gb(10**9, "float32", "bfloat16") == pytest.approx(6.0)
    assert model_load_gb(10**9, "bfloat16", "float16") == pytest.approx(4.0)
    assert model_load_gb(10**9, "bfloat16", None) == pytest.approx(2.0)
    assert checkpoint_dtype(load_model_config("meta-llama/Meta-Llama-3-8B")) == "bfloat16"
    assert checkpoint_dtype(load_model_config("gpt2")) == "float32"  # the config names none


def test_host_ram_grows_with_the_dataset() -> None:
    small = estimate(spec(method="lora"), "a10g", dataset_stats=stats(rows=1_000)).cost_breakdown
    large = estimate(spec(method="lora"), "a10g", dataset_stats=stats(rows=101_000)).cost_breakdown
    added = 100_000 * 400 * CALIBRATION.host_bytes_per_token / 1e9
    assert large.host_ram_gb - small.host_ram_gb == pytest.approx(added)


def test_on_cpu_host_ram_is_the_training_memory() -> None:
    for method in ("lora", "full_finetune"):
        est = estimate(
            spec(model_name="HuggingFaceTB/SmolLM2-135M-Instruct", method=method), "cpu", dataset_stats=stats()
        )
        assert est.cost_breakdown.host_ram_gb == est.estimated_vram_gb


def test_eval_memory_grows_with_the_model_and_runs_on_this_cpu_whatever_the_target() -> None:
    def eval_gb(model: str, method: str = "lora", gpu: str = "a10g") -> float:
        b = estimate(spec(model_name=model, method=method), gpu, dataset_stats=stats()).cost_breakdown
        assert b.eval_memory_gb is not None
        return b.eval_memory_gb

    smollm2, llama = "HuggingFaceTB/SmolLM2-135M-Instruct", "llama-2-7b"
    assert eval_gb("gpt2") < eval_gb(smollm2) < eval_gb("qwen2.5-0.5b") < eval_gb(llama)
    assert eval_gb(llama, gpu="h100") == eval_gb(llama, gpu="cpu") == eval_gb(llama)
    n = count_parameters(load_model_config(llama))
    assert eval_gb(llama) == pytest.approx(CALIBRATION.eval_process_gb + n * (2 + 4) / 1e9, rel=0.01)  # the load peak
    assert eval_gb(llama, "qlora") == eval_gb(llama)  # the adapter goes on an fp32 base, as for LoRA
    # A full fine-tune is evaluated beside its base: a second fp32 model (gpt2's checkpoint is fp32, so no load peak).
    gpt2 = count_parameters(load_model_config("gpt2"))
    assert eval_gb("gpt2", "full_finetune") - eval_gb("gpt2") == pytest.approx(gpt2 * 4 / 1e9, rel=0.02)
    assert eval_gb(llama, "full_finetune") > eval_gb(llama) + n * 2 / 1e9


def test_eval_memory_counts_the_longest_row_logits() -> None:
    gpt2 = {"model_name": "gpt2", "seq_len": 1024}
    short = estimate(spec(**gpt2), dataset_stats=stats(tokens_per_row=100, seq_len=1024)).cost_breakdown
    long = estimate(spec(**gpt2), dataset_stats=stats(tokens_per_row=2000, seq_len=1024)).cost_breakdown
    vocab = load_model_config("gpt2").vocab_size  # rows are truncated to seq_len: 1024 tokens, not 2000
    assert long.eval_memory_gb - short.eval_memory_gb == pytest.approx(
        (1024 - 100) * vocab * 4 * CALIBRATION.eval_logits_copies / 1e9, rel=1e-6
    )


def test_records_written_before_the_memory_fields_still_load() -> None:
    dumped = estimate(spec(), dataset_stats=stats()).model_dump(mode="json")
    for key in ("host_ram_gb", "eval_memory_gb"):
        del dumped["cost_breakdown"][key]
    old = CostEstimate.model_validate(dumped)
    assert old.cost_breakdown.host_ram_gb is None and old.cost_breakdown.eval_memory_gb is None
    console = Console(record=True, width=200)
    console.print(format_estimate_table(old))
    assert "Host RAM" not in console.export_text()


def test_table_compares_cpu_ram_needs_with_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    small_machine = SimpleNamespace(total=2e9)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: small_machine)
    console = Console(record=True, width=200)
    console.print(format_estimate_table(estimate(spec(target_gpu="cpu"), dataset_stats=stats())))
    text = console.export_text()
    assert "Host RAM, training" in text and "of 2.0 GB RAM here: does not fit" in text
    console = Console(record=True, width=200)
    console.print(format_estimate_table(estimate(spec(model_name="gpt2"), "a10g", dataset_stats=stats(rows=100))))
    text = console.export_text()
    assert "on the a10g machine (the catalog has no host RAM figure)" in text
    assert "Memory, evals (CPU here)" in text and "GB of 2.0 GB RAM here" in text


def test_estimate_json_carries_host_ram_and_eval_memory(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["estimate", str(Path(__file__).resolve().parents[2] / "data/specs/llama2_a10g.yaml"), "--json"]) == 0
    breakdown = json.loads(capsys.readouterr().out)["estimate"]["cost_breakdown"]
    assert breakdown["host_ram_gb"] > CALIBRATION.cpu_process_gb
    assert breakdown["eval_memory_gb"] > 4 * breakdown["total_params"] / 1e9


def test_a_full_finetune_on_several_gpus_shards_by_default_and_a_person_can_say_otherwise() -> None:
    base = {"model_name": "meta-llama/Meta-Llama-3-8B", "dataset_path": "d.jsonl", "target_gpu": "h100"}
    assert TrainingSpec(**base, method="full_finetune", num_gpus=8).sharding == "fsdp"
    assert TrainingSpec(**base, method="full_finetune", num_gpus=8, sharding="none").sharding == "none"
    assert TrainingSpec(**base, method="lora", num_gpus=8).sharding == "none"
    assert TrainingSpec(**base, method="full_finetune").sharding == "none"
