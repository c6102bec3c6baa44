"""The GPU catalog: a data file with prices and sources, read into typed records."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError
from tools.core.money import require_price
from tools.core.settings import settings

CATALOG_PATH = Path(__file__).with_name("gpu_catalog.yaml")


class GPU(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    modal_name: str | None
    memory_gb: float = Field(gt=0)
    bf16_tflops: float = Field(gt=0)
    bf16_supported: bool
    price_usd_per_hour: float | None = Field(ge=0, description="None: no price is known; the gate refuses it.")
    memory_bandwidth_gb_s: float | None = Field(default=None, gt=0, description="None: the CPU (not modelled).")
    link_gb_s: float | None = Field(default=None, gt=0, description="GPU-to-GPU, one way, in one machine.")

    @property
    def price_usd_per_sec(self) -> float:
        """Refused (GuardRefusal) when the catalog states no price: an unknown price is never billed as $0."""
        return require_price(self.price_usd_per_hour, f"the {self.name}") / 3600.0


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    prices_as_of: str
    gpus: dict[str, GPU]


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    gpus = {name: GPU(name=name, **fields) for name, fields in raw["gpus"].items()}
    return Catalog(source=raw["source"], prices_as_of=str(raw["prices_as_of"]), gpus=gpus)


def gpu_names() -> list[str]:
    return list(load_catalog().gpus)


def get_gpu(name: str) -> GPU:
    try:
        gpu = load_catalog().gpus[name.strip().lower()]
    except KeyError:
        raise AegisError(f"unknown GPU '{name}'; choose one of {', '.join(gpu_names())}") from None
    # What the operator says this machine costs (AEGIS_LOCAL_PRICE_USD_PER_HOUR): a shared box is not free.
    price = settings().local_price_usd_per_hour if gpu.name == "cpu" else None
    return gpu if price is None else gpu.model_copy(update={"price_usd_per_hour": price})
