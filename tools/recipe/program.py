"""One fine-tuning run in torchtune's shape: construct (config already checked) -> setup() -> train()
-> save_checkpoint() -> cleanup(), and a short main that calls them in order.

Progress goes to metrics_path as JSON lines (start, step, eval, checkpoint, end), flushed at once so the
parent can follow the run. A known failure exits with its own code (tools/recipe/exits.py) so the parent
can classify it without guessing from the text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tools.recipe.checkpoint import (
    CHECKPOINT_FILES,
    mark_unstable,
    median,
    prune_checkpoints,
    sha256_file,
    spikes,
    window_is_stable,
)
from tools.recipe.config import RecipeConfig, load_config
from tools.recipe.data import Example, bad_data, encode_examples, read_records, resolve_format, split_heldout
from tools.recipe.exits import (
    EXIT_CONFIG,
    EXIT_MISSING_DEPENDENCY,
    EXIT_NAN_LOSS,
    EXIT_UNSUPPORTED,
    RecipeFailure,
    known_failure,
)
from tools.recipe.formatting import IGNORE_INDEX
from tools.recipe.lora import apply_lora, default_lora_targets, linear_layer_names
from tools.recipe.packing import (
    attention_kind,
    collate_packed,
    collate_padded,
    flash_attention_available,
    pack_examples,
)
from tools.recipe.precision import device_supports_bf16, resolve_precision
from tools.recipe.sharding import full_state_dict, make_optimizer, shard_model


def log(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # one copy of each line under torchrun
        print(f"[aegis] {message}", flush=True)


class FineTuneRecipe:
    """One fine-tuning run: setup() -> train() -> save_checkpoint() -> cleanup()."""

    def __init__(self, cfg: RecipeConfig):
        self.cfg = cfg
        self.spec = cfg.spec
        self.method = self.spec.method
        self.output_dir = cfg.output_dir
        self.metrics_path = cfg.metrics_path
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.is_main = self.rank == 0
        self.sharded = self.world_size > 1 and self.spec.sharding == "fsdp"
        self.global_step = 0
        self.epoch = 0
        self.tokens_seen = 0
        self.last_loss: float | None = None
        self.eval_losses: list[tuple[int, float]] = []
        self.grad_norms: list[float] = []  # before the current checkpoint window: the baseline of a stable run
        self.window_grad_norms: list[float] = []  # since the last checkpoint
        self.checkpoint_step: int | None = None  # the newest checkpoint this run saved, until a spike discredits it
        self.checkpoint_path: Path | None = None
        self.started = time.monotonic()
        self.train_started = self.started
        self._metrics = None

    # -- bookkeeping --------------------------------------------------------------------------

    def emit(self, record: dict[str, Any]) -> None:
        """Append one JSON line to the metrics file and flush it, so the parent sees it at once."""
        if not self.is_main:
            return
        if self._metrics is None:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def peak_mem_mb(self) -> float:
        """GPU: the allocator's peak; CPU: the process's peak resident set."""
        import torch

        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:  # VmHWM is this process's own peak; ru_maxrss also holds the parent's size at fork
            for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # -- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        import torch

        if self.cfg.device == "cuda" and not torch.cuda.is_available():
            raise RecipeFailure(EXIT_UNSUPPORTED, "unsupported", "the config asks for a CUDA GPU but none is visible")
        if self.world_size > 1:
            self._setup_distributed()
        elif self.cfg.device == "cuda":
            self.device = torch.device("cuda", 0)
        else:
            self.device = torch.device("cpu")
        if self.method == "qlora" and self.device.type != "cuda":
            raise RecipeFailure(
                EXIT_UNSUPPORTED,
                "unsupported",
                "qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); this machine has none. "
                "Use method 'lora' here, or run qlora on a GPU",
            )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._set_seed(self.spec.seed)
        self.precision = self._resolve_precision()
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        # Data before the model: a bad dataset should fail in seconds, not after loading billions of weights.
        self.tokenizer = self._load_tokenizer()
        self.train_rows, self.eval_rows, self.dropped = self._load_data()
        self.train_batches = self._train_batches()
        self.model = self._load_model()
        if self.sharded:  # before the optimizer: it must see the sharded parameters
            self.model = shard_model(self.model, self.device)
            log("FSDP full shard: no resumable checkpoints mid-run; the final model is gathered to rank 0")
        self._setup_optimizer()
        if self.cfg.resume_from:
            self._load_checkpoint(Path(self.cfg.resume_from))
        if self.world_size > 1 and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)

    def _setup_distributed(self) -> None:
        """Basic DDP under torchrun: one process per GPU, each sees its own share of the batches."""
        import torch
        import torch.distributed as dist

        backend = "nccl" if self.cfg.device == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if self.cfg.device == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")

    def _set_seed(self, seed: int) -> None:
        import torch

        random.seed(seed)
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)

    def _resolve_precision(self) -> str:
        """The host's decision, checked against the hardware this process really got."""
        requested = self.cfg.precision
        precision = resolve_precision(
            requested, self.device.type, bf16_supported=device_supports_bf16(self.device.type)
        )
        if requested == "bf16" and precision == "fp16":
            log("this GPU has no bf16; using fp16 with loss scaling instead")
        return precision

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                self.cfg.model_path, trust_remote_code=self.spec.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise RecipeFailure(
                EXIT_CONFIG, "model_not_found", f"cannot load the tokenizer of '{self.cfg.model_path}': {exc}"
            ) from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def _load_model(self):
        import torch
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"trust_remote_code": self.spec.trust_remote_code}
        if self.method == "qlora":
            kwargs.update(self._qlora_kwargs())
        elif self.precision == "bf16_pure":
            # Weights, gradients and optimizer states in bf16, no fp32 master copy: half the memory, less exact.
            kwargs["dtype"] = torch.bfloat16
        elif self.method == "lora" and self.amp_dtype is not None:
            # Frozen base weights are only read: keep them in the compute dtype to halve their memory.
            kwargs["dtype"] = self.amp_dtype
        else:
            # Full fine-tuning keeps fp32 master weights; autocast runs the matmuls in bf16/fp16.
            kwargs["dtype"] = torch.float32
        half = kwargs["dtype"] in (torch.bfloat16, torch.float16)
        if self.spec.packing and flash_attention_available(self.device.type, half):
            kwargs["attn_implementation"] = "flash_attention_2"  # packed rows go to its variable-length kernel
        try:
            model = AutoModelForCausalLM.from_pretrained(self.cfg.model_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise RecipeFailure(
                EXIT_CONFIG, "model_not_found", f"cannot load the model '{self.cfg.model_path}': {exc}"
            ) from None
        model.config.use_cache = False
        self.attention = attention_kind(model.config)
        if self.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.spec.gradient_checkpointing)
        elif self.spec.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.method in ("lora", "qlora"):
            model = self._add_lora(model)
        if self.method != "qlora":
            model.to(self.device)
        model.train()
        self.total_params = sum(p.numel() for p in model.parameters())
        self.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return model

    def _qlora_kwargs(self) -> dict[str, Any]:
        """4-bit NF4 base weights (setup() has already refused a machine without CUDA)."""
        import torch

        try:
            import bitsandbytes  # noqa: F401 - the 4-bit kernels transformers will call
        except ImportError:
            raise RecipeFailure(
                EXIT_MISSING_DEPENDENCY, "missing_dependency", "qlora needs bitsandbytes: pip install bitsandbytes"
            ) from None
        from transformers import BitsAndBytesConfig

        compute = self.amp_dtype or torch.float32
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        return {"quantization_config": quant, "dtype": compute, "device_map": {"": self.device.index or 0}}

    def _add_lora(self, model):
        targets = self.spec.lora_target_modules or default_lora_targets(linear_layer_names(model))
        if not targets:
            raise RecipeFailure(
                EXIT_UNSUPPORTED,
                "unsupported",
                f"no known attention projections in {type(model).__name__}; set lora_target_modules in the spec",
            )
        model = apply_lora(
            model, list(targets), r=self.spec.lora_r, alpha=self.spec.lora_alpha, dropout=self.spec.lora_dropout
        )
        if self.cfg.init_adapter:
            self._warm_start(model, Path(self.cfg.init_adapter))
        return model

    def _warm_start(self, model, folder: Path) -> None:
        """Load a finished run's adapter into the new LoRA; one that does not fit it is refused, naming what differs."""
        saved = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        lora = model.peft_config["default"]
        differs = []
        if saved.get("r") != lora.r:
            differs.append(f"lora_r {saved.get('r')} there, {lora.r} here")
        theirs = saved.get("target_modules")
        theirs, ours = sorted(theirs) if isinstance(theirs, list) else theirs, sorted(lora.target_modules)
        if theirs != ours:
            differs.append(f"lora_target_modules {theirs} there, {ours} here")
        differs = differs or self._load_adapter_weights(model, folder)
        if differs:
            raise RecipeFailure(
                EXIT_CONFIG, "config", f"init_adapter {folder} does not fit this LoRA: {'; '.join(differs)}"
            )
        if saved.get("lora_alpha") != lora.lora_alpha:
            alpha = saved.get("lora_alpha")
            log(f"the adapter was trained with lora_alpha {alpha}, this run scales it by {lora.lora_alpha}")
        log(f"warm start from adapter {folder}")

    @staticmethod
    def _load_adapter_weights(model, folder: Path) -> list[str]:
        """Copy the adapter's tensors into the LoRA; what did not load, in words ([] when all did)."""
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        try:
            result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"))
        except (RuntimeError, ValueError) as exc:  # a shape that does not fit: another base model
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            return [next((line for line in lines if "mismatch" in line), lines[-1])]
        missing = [key for key in result.missing_keys if ".lora_" in key]
        found = (("unknown to this model", result.unexpected_keys), ("missing from it", missing))
        return [f"{len(keys)} tensors {what} (first: {keys[0]})" for what, keys in found if keys]

    # -- data ---------------------------------------------------------------------------------

    def _load_data(self) -> tuple[list[Example], list[Example], int]:
        """Read, split (held-out records go to heldout.jsonl for the evals), and encode with the prompt masked."""
        path = self.cfg.dataset_path
        records = read_records(path)
        if not records:
            raise bad_data(f"dataset '{path}' has no rows")
        fmt = resolve_format(records, self.spec.dataset_format, source=f"dataset '{path}'")
        if self.cfg.eval_dataset_path:
            train_records, eval_records = records, read_records(self.cfg.eval_dataset_path)
        else:
            train_records, eval_records = split_heldout(records, self.spec.eval_split, self.spec.seed)
        if self.is_main:
            with open(self.output_dir / "heldout.jsonl", "w", encoding="utf-8") as fh:
                for record in eval_records:
                    fh.write(json.dumps(record, default=str) + "\n")
        train, dropped = encode_examples(self.tokenizer, train_records, fmt, self.spec.seq_len)
        evals, _ = encode_examples(self.tokenizer, eval_records, fmt, self.spec.seq_len)
        if not train:
            raise bad_data(
                f"no usable training example in '{path}' as format '{fmt}' "
                f"({dropped} rows dropped: missing fields, or nothing to learn within seq_len)"
            )
        return train, evals, dropped

    def _train_batches(self) -> list:
        """Rows of at most seq_len: packed (examples kept apart, see packing.py) or one example per padded row."""
        if not self.spec.packing:
            return list(self.train_rows)
        return pack_examples(self.train_rows, self.spec.seq_len)

    def _train_batch(self, indices: list[int]) -> tuple[dict[str, Any], int]:
        """A micro-batch on the device, and how many real (not padding) tokens it holds."""
        rows = [self.train_batches[i] for i in indices]
        pad = self.tokenizer.pad_token_id
        if self.spec.packing:
            batch = collate_packed(rows, pad, self.attention, self.amp_dtype)
        else:
            batch = collate_padded(rows, pad, pad_to=self.spec.seq_len)
        return {k: v.to(self.device) for k, v in batch.items()}, sum(len(row[0]) for row in rows)

    # -- optimizer and schedule -----------------------------------------------------------------

    def _setup_optimizer(self) -> None:
        import torch
        from transformers import get_scheduler

        mbs = self.spec.micro_batch_size
        accum = self.spec.gradient_accumulation_steps
        per_rank = len(self.train_batches) // self.world_size
        if per_rank == 0:
            raise bad_data(f"{len(self.train_batches)} training rows cannot feed {self.world_size} GPUs")
        self.micro_per_epoch = math.ceil(per_rank / mbs)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / accum)
        total = self.steps_per_epoch * self.spec.num_epochs
        self.total_steps = min(total, self.cfg.max_steps) if self.cfg.max_steps else total
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(
            self.spec.optimizer, params, lr=self.spec.learning_rate, weight_decay=self.spec.weight_decay
        )
        self.scheduler = get_scheduler(
            self.spec.lr_scheduler,
            self.optimizer,
            num_warmup_steps=min(self.spec.warmup_steps, self.total_steps),
            num_training_steps=self.total_steps,
        )
        # fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" and self.device.type == "cuda" else None

    def _epoch_order(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches for an epoch: a seeded shuffle, so a resumed run replays the same order."""
        order = list(range(len(self.train_batches)))
        random.Random(self.spec.seed * 1000 + epoch).shuffle(order)
        # Every rank gets the same number of rows, or DDP would wait forever for the one that ran out.
        mine = order[self.rank :: self.world_size][: len(order) // self.world_size]
        mbs = self.spec.micro_batch_size
        return [mine[i : i + mbs] for i in range(0, len(mine), mbs)]

    def _autocast(self):
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- train --------------------------------------------------------------------------------

    def evaluate(self) -> float | None:
        """Token-weighted mean loss over the held-out examples; None when there are none."""
        import torch

        if not self.eval_rows:
            return None
        self.model.eval()
        total, count = 0.0, 0
        mbs = self.spec.micro_batch_size
        with torch.no_grad():
            for start in range(0, len(self.eval_rows), mbs):
                batch = collate_padded(self.eval_rows[start : start + mbs], self.tokenizer.pad_token_id, pad_to=None)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                with self._autocast():
                    loss = self.model(**batch).loss
                total += float(loss) * n
                count += n
        self.model.train()
        return total / count if count else None

    def _emit_eval(self) -> None:
        eval_loss = self.evaluate()
        if eval_loss is not None:
            self.eval_losses.append((self.global_step, eval_loss))
            self.emit({"type": "eval", "step": self.global_step, "eval_loss": eval_loss})
            log(f"eval at step {self.global_step}: loss {eval_loss:.4f}")

    def _emit_start(self) -> None:
        self.emit(
            {
                "type": "start",
                "total_steps": self.total_steps,
                "start_step": self.global_step,
                "train_rows": len(self.train_rows),
                "train_sequences": len(self.train_batches),
                "train_tokens": sum(len(ids) for ids, _ in self.train_rows),
                "eval_rows": len(self.eval_rows),
                "dropped_rows": self.dropped,
                "trainable_params": self.trainable_params,
                "total_params": self.total_params,
                "dtype": self.precision,
                "device": str(self.device),
                "method": self.method,
                "packing": self.spec.packing,
                "world_size": self.world_size,
            }
        )
        log(
            f"{self.method} on {self.device} ({self.precision}): {len(self.train_rows)} train rows, "
            f"{self.trainable_params:,} trainable of {self.total_params:,} params, {self.total_steps} steps"
        )

    def train(self) -> None:
        accum = self.spec.gradient_accumulation_steps
        self._emit_start()
        self._emit_eval()
        self.train_started = time.monotonic()
        self.run_tokens = 0
        start_step = self.global_step
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        for epoch in range(self.spec.num_epochs):
            micro_batches = self._epoch_order(epoch)
            done_in_epoch = self.global_step - epoch * self.steps_per_epoch
            if done_in_epoch >= self.steps_per_epoch:
                continue  # finished before a resume
            self.epoch = epoch
            skip = max(done_in_epoch, 0) * accum
            for first in range(skip, len(micro_batches), accum):
                group = micro_batches[first : first + accum]
                grad_norm, lr = self._optimizer_step(group, trainable)
                elapsed = time.monotonic() - self.train_started
                done = self.global_step - start_step
                self.emit(
                    {
                        "type": "step",
                        "step": self.global_step,
                        "total_steps": self.total_steps,
                        "epoch": epoch + (first + len(group)) / len(micro_batches),
                        "loss": self.last_loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens": self.tokens_seen,
                        "tokens_per_s": self.run_tokens / elapsed if elapsed > 0 else 0.0,
                        "elapsed_s": elapsed,
                        "eta_s": elapsed / done * (self.total_steps - self.global_step),
                        "peak_mem_mb": self.peak_mem_mb(),
                    }
                )
                self.window_grad_norms.append(grad_norm)
                every = self.cfg.checkpoint_every
                if every and self.global_step % every == 0 and self.global_step < self.total_steps:
                    self._save_training_state()
                if self.global_step >= self.total_steps:
                    break
            if self.global_step >= self.total_steps:
                break
        self.train_seconds = time.monotonic() - self.train_started
        self._emit_eval()

    def _optimizer_step(self, group: list[list[int]], trainable: list) -> tuple[float, float]:
        """Forward and backward over one step's micro-batches, then one update; returns its grad norm and lr."""
        import torch

        losses, step_tokens = [], 0
        for indices in group:
            batch, tokens = self._train_batch(indices)
            step_tokens += tokens
            with self._autocast():
                loss = self.model(**batch).loss
            if not torch.isfinite(loss):
                self._diverged(f"loss became non-finite ({float(loss)}) at step {self.global_step + 1}")
            losses.append(float(loss.detach()))
            scaled = loss / len(group)
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        if self.sharded:  # FSDP2's norm is a DTensor over every rank's shard
            grad_norm = grad_norm.full_tensor()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not torch.isfinite(grad_norm):
            self._diverged(f"gradients became non-finite ({float(grad_norm)}) at step {self.global_step + 1}")
        elif float(grad_norm) == 0.0:
            # Every row has labels, so exact zeros mean activations overflowed inside a norm layer
            # (x*x -> inf, scale -> 0): the run diverged even though the loss still prints finite.
            self._diverged(f"gradients vanished to exactly zero at step {self.global_step + 1}: activations overflowed")
        else:
            self.optimizer.step()
        if self.checkpoint_step == self.global_step and spikes(float(grad_norm), median(self.grad_norms)):
            self._distrust_checkpoint()  # the update saved in it is what made this step spike
        lr = self.optimizer.param_groups[0]["lr"]  # what this step used (a resumed run may rescale it)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        step_tokens *= self.world_size
        self.tokens_seen += step_tokens
        self.run_tokens += step_tokens
        self.last_loss = sum(losses) / len(losses)
        return float(grad_norm), lr

    def _diverged(self, what: str) -> None:
        """Stop with nan_loss. A checkpoint saved just before this step holds the update that diverged."""
        if self.checkpoint_step == self.global_step:
            self._distrust_checkpoint()
        raise RecipeFailure(EXIT_NAN_LOSS, "nan_loss", f"{what}; lower the learning rate")

    def _distrust_checkpoint(self) -> None:
        """Mark the newest checkpoint unstable, so a NaN retry rewinds further back."""
        if not self.is_main or self.checkpoint_path is None:
            return
        mark_unstable(self.checkpoint_path)
        path, step = str(self.checkpoint_path), self.checkpoint_step
        self.emit({"type": "checkpoint", "step": step, "path": path, "stable": False})
        self.checkpoint_path = None

    # -- checkpoints --------------------------------------------------------------------------

    def _effective_batch(self) -> int:
        return self.spec.micro_batch_size * self.spec.gradient_accumulation_steps * self.world_size

    def _unwrapped(self):
        return self.model.module if hasattr(self.model, "module") else self.model

    def _save_training_state(self) -> None:
        """Trainable weights + optimizer + schedule + step: enough to resume without starting again."""
        import torch

        if not self.is_main or self.sharded:
            return
        root = self.output_dir / "checkpoints"
        folder = root / f"step-{self.global_step}"
        partial = root / f".partial-step-{self.global_step}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        model = self._unwrapped()
        trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        torch.save(trainable, partial / "trainable.pt")
        torch.save(self._continue_state(), partial / "optim.pt")
        stable = window_is_stable(self.grad_norms, self.window_grad_norms)
        self.grad_norms.extend(self.window_grad_norms)
        self.window_grad_norms = []
        state = {
            "step": self.global_step,
            "epoch": self.epoch,
            "tokens": self.tokens_seen,
            "loss": self.last_loss,
            "learning_rate": self.spec.learning_rate,
            "effective_batch": self._effective_batch(),
            "total_steps": self.total_steps,
            "seed": self.spec.seed,
            "stable": stable,
            "grad_norm_median": median(self.grad_norms),
            "files": {name: sha256_file(partial / name) for name in CHECKPOINT_FILES},
        }
        (partial / "state.json").write_text(json.dumps(state), encoding="utf-8")
        partial.rename(folder)  # a save killed half-way never looks like a checkpoint
        self.checkpoint_step, self.checkpoint_path = self.global_step, folder
        self.emit({"type": "checkpoint", "step": self.global_step, "path": str(folder), "stable": stable})
        log(f"checkpoint saved at step {self.global_step} ({'stable' if stable else 'gradients spiking'}): {folder}")
        prune_checkpoints(root)

    def _continue_state(self) -> dict[str, Any]:
        """What optim.pt holds beside the weights: the optimizer, the schedule, the random number generators (dropout
        draws from them) and the fp16 loss scale, so a resumed run draws the same masks and follows the same curve."""
        import torch

        rng: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def _restore_continue_state(self, optim: dict[str, Any]) -> None:
        """The inverse of _continue_state; a checkpoint from before the generators were saved still loads."""
        import torch

        self.optimizer.load_state_dict(optim["optimizer"])
        self.scheduler.load_state_dict(optim["scheduler"])
        if self.scaler is not None and optim.get("scaler"):
            self.scaler.load_state_dict(optim["scaler"])
        rng = optim.get("rng")
        if not rng:
            log("this checkpoint holds no random number generator states: dropout will draw other masks")
            return
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        torch.set_rng_state(rng["torch"].cpu())
        if self.device.type == "cuda" and rng.get("cuda"):
            # one state per GPU that saved it; a machine that sees fewer GPUs restores the ones it has
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"][: torch.cuda.device_count()]])

    def _load_checkpoint(self, folder: Path) -> None:
        import torch

        trainable = torch.load(folder / "trainable.pt", map_location=self.device)
        missing = set(trainable) - {n for n, p in self.model.named_parameters() if p.requires_grad}
        if missing:
            raise RecipeFailure(
                EXIT_CONFIG, "config", f"checkpoint {folder} does not match this model ({len(missing)} unknown tensors)"
            )
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        effective = self._effective_batch()
        if state.get("effective_batch", effective) != effective:
            raise RecipeFailure(
                EXIT_CONFIG,
                "config",
                f"checkpoint {folder} was trained with effective batch {state['effective_batch']}, this run uses "
                f"{effective}: the optimizer state and data order would not match",
            )
        if int(state["step"]) >= self.total_steps:
            raise RecipeFailure(
                EXIT_CONFIG, "config", f"checkpoint {folder} is at step {state['step']} of {self.total_steps}: done"
            )
        self.model.load_state_dict(trainable, strict=False)
        self._restore_continue_state(torch.load(folder / "optim.pt", map_location=self.device))
        self._rescale_learning_rate(state.get("learning_rate"))
        self.global_step, self.tokens_seen = int(state["step"]), int(state["tokens"])
        self.last_loss = state.get("loss")
        if state.get("grad_norm_median"):
            self.grad_norms = [float(state["grad_norm_median"])]
        log(f"resumed from {folder} at step {self.global_step}")

    def _rescale_learning_rate(self, saved_lr: float | None) -> None:
        """The schedule's shape and position stay; only its peak changes (a NaN retry halves it)."""
        lr = self.spec.learning_rate
        if not saved_lr or saved_lr == lr:
            return
        ratio = lr / saved_lr
        self.scheduler.base_lrs = [base * ratio for base in self.scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["lr"] *= ratio
            group["initial_lr"] = group.get("initial_lr", saved_lr) * ratio
        log(f"learning rate rescaled from {saved_lr:g} to {lr:g} (x{ratio:g}) at the checkpoint")

    def save_checkpoint(self) -> None:
        """The adapter (LoRA) or the full model, with the tokenizer, in output_dir/final/; then result.json."""
        state = full_state_dict(self.model) if self.sharded else None  # a collective: every rank takes part
        if not self.is_main:
            return
        final = self.output_dir / "final"
        self._unwrapped().save_pretrained(final, state_dict=state)
        self.tokenizer.save_pretrained(final)
        duration = time.monotonic() - self.started
        result = {
            "status": "completed",
            "method": self.method,
            "steps": self.global_step,
            "total_steps": self.total_steps,
            "final_train_loss": self.last_loss,
            "initial_eval_loss": self.eval_losses[0][1] if self.eval_losses else None,
            "final_eval_loss": self.eval_losses[-1][1] if len(self.eval_losses) > 1 else None,
            "tokens": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "duration_s": duration,
            "tokens_per_s": self.run_tokens / self.train_seconds if self.train_seconds > 0 else 0.0,
            "peak_mem_mb": self.peak_mem_mb(),
            "dtype": self.precision,
            "final_dir": str(final),
        }
        (self.output_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        self.emit({"type": "end", **result})
        log(f"saved to {final}")

    def fail(self, reason: str, message: str) -> None:
        self.emit({"type": "end", "status": "failed", "reason": reason, "step": self.global_step, "message": message})

    def cleanup(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Aegis-ML fine-tuning recipe")
    parser.add_argument("--config", required=True, type=Path, help="config.json written by the renderer")
    args = parser.parse_args(argv)
    recipe: FineTuneRecipe | None = None
    try:
        recipe = FineTuneRecipe(load_config(args.config))
        recipe.setup()
        recipe.train()
        recipe.save_checkpoint()
        return 0
    except Exception as exc:
        failure = known_failure(exc)
        if failure is None:
            if recipe is not None:
                recipe.fail("error", f"{type(exc).__name__}: {exc}")
            raise
        code, reason, message = failure
        print(f"AEGIS-ERROR [{reason}]: {message}", file=sys.stderr, flush=True)
        if recipe is not None:
            recipe.fail(reason, message)
        return code
    finally:
        if recipe is not None:
            recipe.cleanup()


if __name__ == "__main__":
    sys.exit(main())
