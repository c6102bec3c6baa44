"""The GPU part of the offline planner's reading of a request: which catalog GPU, how many, or an accelerator
the catalog does not have.

Apart from the other rules because GPU names are a topic of their own: the catalog's spellings, memory
variants, counts in words, and the accelerators people name that the catalog lacks.
"""

from __future__ import annotations

import re

from agent.request_reading import INT, NUMBER_WORDS, Reading, whole
from tools.core.catalog import gpu_names

# Counts of GPUs in words: "two A100s", "a pair of L4s", "dual H100".
_COUNT_WORDS = {**NUMBER_WORDS, "a pair of": 2, "a couple of": 2, "dual": 2, "quad": 4, "single": 1}
# Accelerators the catalog does not have, in the ways people name them.
_HARDWARE = (
    r"\b(?:tpu[\w.\-]*|v100\w*|p100\w*|p40|k80|a10(?!g)\w*|a30\w*|a40\w*|a[2-6]000\w*|a2\b|h800\w*|h20\b|gh200|"
    r"b100|l40(?!s)\w*|rtx[\s\-]?\w+|gtx[\s\-]?\w+|quadro[\s\-]?\w+|titan[\s\-]?\w+|tesla[\s\-]?\w+|radeon[\s\-]?\w*|"
    r"mi\d{2,3}\w*|instinct\w*|gaudi\w*|inferentia\w*|trainium\w*|(?:apple\s+)?m[1-4](?:\s+(?:pro|max|ultra))?\b|mps|"
    r"apple silicon|npu|xpu|ipu|neuron\s*cores?)"
)
_CPU = r"\b(?:on|using)\s+(?:this|my|the|a|our)\s+(?:machine|laptop|computer|box|cpu|pc|desktop|workstation)\b|\blocally\b|\bon\s+(?:the\s+)?cpu\b"


def _catalog_gpu(written: str) -> str:
    """The catalog name of a GPU as a person wrote it ("RTX 4090", "A100 80GB", "A6000")."""
    plain = re.sub(r"[\s\-]", "", written.lower())
    spellings = {g.replace("-", ""): g for g in gpu_names()}
    spellings |= {g.removeprefix("rtx-"): g for g in gpu_names() if g.startswith("rtx-a")}
    return spellings.get(plain, plain)


def _written(name: str) -> str:
    """A pattern for a catalog GPU name as people write it: spaces or nothing for its hyphens, and the RTX A
    cards also without "RTX"."""
    pattern = re.escape(name).replace(r"\-", r"[\s\-]?")
    return r"(?:rtx[\s\-]?)?" + pattern.removeprefix(r"rtx[\s\-]?") if name.startswith("rtx-a") else pattern


def _families() -> dict[str, list[str]]:
    """Catalog GPUs that come in memory variants ("a100": a100-40gb and a100-80gb): a bare family name is ambiguous."""
    families: dict[str, list[str]] = {}
    for name in gpu_names():
        if m := re.fullmatch(r"(.+)-\d+gb", name):
            families.setdefault(m.group(1), []).append(name)
    return {family: names for family, names in families.items() if len(names) > 1}


def read_gpu(r: Reading) -> None:
    """The target GPU and how many; a GPU or accelerator named that the catalog has not, as not understood."""
    families = _families()
    names = sorted([*gpu_names(), *families], key=len, reverse=True)
    gpus = "|".join(_written(g) for g in names)
    words = "|".join(sorted(_COUNT_WORDS, key=len, reverse=True)).replace(" ", r"\s+")
    gpu = rf"(?<![\w\-])({gpus})s?(?![\w\-])"
    cheapest = r.find(
        r"\b(?:cheapest|least\s+expensive|lowest[\s\-]cost)\s+(?:available\s+|catalog\s+|cloud\s+)?"
        r"(?:gpu|card|accelerator|device)s?(?:\s+(?:that|which)\s+(?:fits|works|will\s+do|can\s+(?:run|hold)\s+it))?"
        r"|\b(?:whatever|whichever|any)\s+(?:gpu|card|accelerator)\s+(?:that\s+)?(?:is\s+)?(?:the\s+)?"
        r"(?:cheapest|least\s+expensive)(?:\s+(?:that|which)\s+fits)?"
    )
    counted = (  # (pattern, group of the count, group of the GPU)
        (rf"(?<![\w.]){INT}\s*(?:x|×)\s*{gpu}", 1, 2),  # 2x H100, 8×A100-80GB
        (rf"{gpu}\s*(?:x|×)\s*{INT}\b", 2, 1),  # H100 x 4
        (rf"(?<![\w.]){INT}\s+{gpu}(?:\s+(?:gpus?|cards?))?", 1, 2),  # 4 H100 GPUs
        (rf"\b({words})\s+{gpu}", 1, 2),  # two A100s, a pair of L4s
    )
    for pattern, count, written in counted:
        if m := r.find(pattern):
            r.out["num_gpus"] = _count(m.group(count))
            _named(r, families, m, m.group(written))
            break
    else:
        if m := r.find(gpu):
            _named(r, families, m, m.group(1))
        elif r.find(_CPU):
            r.out["target_gpu"] = "cpu"
    only_count = rf"(?:(?<![\w.]){INT}|\b({words}))\s+(?:gpus|cards)\b"  # "on 4 GPUs": the kind said elsewhere, or not
    if m := r.find(only_count):
        r.out.setdefault("num_gpus", _count(m.group(1) or m.group(2)))
    for m in r.find_all(gpu):
        r.not_understood(f"'{r.original(m)}': a second GPU (a job runs on one kind of GPU)")
    if cheapest and "target_gpu" not in r.out:
        r.out["cheapest_gpu"] = True
    for m in r.find_all(rf"(?:\b\d+\s*(?:x|×)?\s*)?{_HARDWARE}"):
        r.not_understood(f"'{r.original(m)}': an accelerator the catalog does not have")
    for m in r.find_all(r"\bon\s+(?:an?\s+|the\s+|\d+\s*x?\s*)?([a-z][\w.\-]*)\s+(?:gpus?|accelerators?|chips?)\b"):
        if m.group(1).lower() not in (
            "a",
            "an",
            "the",
            "single",
            "one",
            "big",
            "small",
            "cheap",
            "fast",
            "nvidia",
            "cloud",
        ):
            r.not_understood(f"'{r.original(m, 1)}': an accelerator the catalog does not have")
    r.find_all(r"\b(?:nvidia\s+)?(?:gpus?|cuda)\b")


def _count(written: str) -> int:
    """A count of GPUs as written: digits, or words ("two", "a pair of")."""
    return _COUNT_WORDS.get(" ".join(written.lower().split())) or whole(written)


def _named(r: Reading, families: dict[str, list[str]], match: re.Match[str], written: str) -> None:
    """The target GPU the person named; for a family with several variants, a question naming them, not a guess."""
    name = _catalog_gpu(written)
    if name in families:
        choices = " or ".join(families[name])
        r.not_understood(f"'{r.original(match)}': which {name.upper()}, {choices}? Say which")
    else:
        r.out["target_gpu"] = name
