"""The offline planner's reading of a request: rules that map words to spec fields, and account for the rest.

Every rule that maps a part of the request to a field marks that part as read. What is left is searched
for what could have changed the spec: a number (with whatever unit follows it), an accelerator, a model
name, a word in another language. Each is named in ``not_understood``, so the intake asks about it
instead of taking a default. Plain English filler ("please", "with", "the") changes nothing and is let be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tools.core.catalog import gpu_names
from tools.job.probing import PROBE_ATTEMPT_STEPS

MODEL_ALIASES = {
    "smollm2": "local:smollm2-135m-instruct",
    "smollm": "local:smollm2-135m-instruct",
    "tiny-llama": "local:tiny-llama",
    "tinyllama": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama 2 7b": "meta-llama/Llama-2-7b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama 3 8b": "meta-llama/Meta-Llama-3-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "mistral 7b": "mistralai/Mistral-7B-v0.1",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5 0.5b": "Qwen/Qwen2.5-0.5B",
    "gpt2": "gpt2",
    "gpt-2": "gpt2",
}
NUM = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_SUFFIX = r"\.(?:jsonl|json|csv|parquet)\b"
_FILE = rf"(?:\.{{0,2}}/|~/)?(?:[\w.\-]+/)*[\w.\-]+{_SUFFIX}"
_FOLDER = r"(?<![\w/.:-])(?:\.{0,2}/|~/|/)?(?:[\w.\-]+/)+(?![\w.\-])"
_ABSOLUTE = r"(?<!\S)(?:\.\./|/)[\w./\-]+"
_HUB_DATA = r"\bhf:[\w.\-]+(?:/[\w.\-]+)?"
_OWNER_NAME = r"(?<![\w/:.\-])[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*(?![\w/])"
_DATA_CONTEXT = r"(?:\bon|\bdata(?:set)?|\bfrom|\bwith|\bin|\busing)\s+(?:the\s+|my\s+)?(?:data(?:set)?\s+)?$"
# Accelerators the catalog does not have, in the ways people name them.
_HARDWARE = (
    r"\b(?:tpu[\w.\-]*|v100\w*|p100\w*|p40|k80|a10(?!g)\w*|a30\w*|a40\w*|a[2-6]000\w*|a2\b|h800\w*|h20\b|gh200|"
    r"b100|l40(?!s)\w*|rtx[\s\-]?\w+|gtx[\s\-]?\w+|quadro[\s\-]?\w+|titan[\s\-]?\w+|tesla[\s\-]?\w+|radeon[\s\-]?\w*|"
    r"mi\d{2,3}\w*|instinct\w*|gaudi\w*|inferentia\w*|trainium\w*|(?:apple\s+)?m[1-4](?:\s+(?:pro|max|ultra))?\b|mps|"
    r"apple silicon|npu|xpu|ipu|neuron\s*cores?)"
)
_MODEL_WORDS = (
    r"\b(?:llama|mistral|mixtral|qwen|gemma|phi|falcon|gpt|bert|roberta|t5|bloom|pythia|deepseek|smollm|olmo|"
    r"stablelm|starcoder|codellama|vicuna|baichuan|internlm|claude|granite|nemotron|zephyr|tinyllama|opt-)[\w.\-]*"
    r"|\b\d+(?:\.\d+)?[bm]\b"
)
# Common words of other languages; none is also an English word a request would use.
_FOREIGN = set(
    """bitte danke mit auf einer einem einen eine und von fuer der das dem des ist nicht oder ueber epochen
    epoche feintuning feinabstimmung trainiere trainieren datei daten lernrate schritte modell stapelgroesse
    sur avec pour les une du et epoques epoque entraine entrainer affiner affinage fichier donnees modele sil
    vous plait con por favor para sobre epocas epoca los las entrena entrenar ajuste fino datos archivo pasos
    sul sulla epoche addestra addestrare dati modello uma treine treinar dados arquivo een
    voor tijdperken alstublieft""".split()
)
_CPU = r"\b(?:on|using)\s+(?:this|my|the|a|our)\s+(?:machine|laptop|computer|box|cpu|pc|desktop|workstation)\b|\blocally\b|\bon\s+(?:the\s+)?cpu\b"


@dataclass
class Reading:
    """A request being read: the text, what was mapped to fields, which parts were read, what was not understood."""

    text: str
    low: str
    out: dict[str, Any] = field(default_factory=dict)
    used: list[tuple[int, int]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def find(self, pattern: str) -> re.Match[str] | None:
        """The first match of ``pattern`` in what is still unread; its span is marked read."""
        match = re.search(pattern, self.rest(), re.I)
        if match:
            self.used.append(match.span())
        return match

    def find_all(self, pattern: str) -> list[re.Match[str]]:
        matches = list(re.finditer(pattern, self.rest(), re.I))
        self.used.extend(m.span() for m in matches)
        return matches

    def rest(self) -> str:
        """The lower-cased text with every part already read blanked out (same length, so spans still line up)."""
        chars = list(self.low)
        for start, end in self.used:
            chars[start:end] = " " * (end - start)
        return "".join(chars)

    def original(self, match: re.Match[str], group: int = 0) -> str:
        """What the person wrote for a match (the text is matched lower-cased)."""
        return self.text[match.start(group) : match.end(group)]

    def not_understood(self, what: str) -> None:
        if what not in self.unknown:
            self.unknown.append(what)


def read_request(text: str) -> tuple[dict[str, Any], list[str]]:
    """Fields the request sets, and the parts of it no rule could map (each with what it seems to be)."""
    clean = " ".join(text.split())
    lower = clean.lower()
    reading = Reading(clean, lower if len(lower) == len(clean) else clean)
    for read in (_data, _model, _method, _gpu, _budget, _regime, _probe, _numbers, _levers, _leftovers):
        read(reading)
    return reading.out, reading.unknown


def _data(r: Reading) -> None:
    eval_path = r"(?:eval(?:uation)? (?:data|set|dataset|file)|held[- ]out(?: data| set)?)\s*(?:in|at|from|=|:)?\s*"
    if m := r.find(rf"{eval_path}({_HUB_DATA}|{_FILE}|{_ABSOLUTE}|{_FOLDER})"):
        r.out["eval_dataset_path"] = r.original(m, 1)
    for pattern in (_HUB_DATA, _FILE, _ABSOLUTE, _FOLDER):
        if "dataset_path" not in r.out and (m := r.find(pattern)):
            r.out["dataset_path"] = r.original(m).rstrip(".,;")


def _model(r: Reading) -> None:
    if m := r.find(r"\blocal:[\w.\-]+"):
        r.out["model_name"] = r.original(m)
    for alias, name in MODEL_ALIASES.items():
        spelled = re.escape(alias).replace(re.escape(" "), r"[\s\-]")
        if "model_name" not in r.out and r.find(rf"(?<![\w\-/]){spelled}(?![\w\-/])"):
            r.out["model_name"] = name
    for m in list(re.finditer(_OWNER_NAME, r.rest())):
        name = r.text[m.start() : m.end()].rstrip(".,;")
        before = r.rest()[: m.start()]
        if "dataset_path" not in r.out and re.search(_DATA_CONTEXT, before, re.I) and "model_name" in r.out:
            r.out["dataset_path"] = name  # a Hugging Face dataset id
        elif "model_name" not in r.out:
            r.out["model_name"] = name
        else:
            continue
        r.used.append(m.span())


def _first(r: Reading, name: str, choices: tuple[tuple[str, str], ...]) -> None:
    """Set ``name`` to the value of the first pattern, in order, that the unread text holds."""
    for pattern, value in choices:
        if r.find(pattern):
            r.out[name] = value
            return


def _method(r: Reading) -> None:
    _first(
        r,
        "method",
        (
            (r"\bq-?lora\b|\b4[\s\-]?bit\b(?:\s+(?:lora\s+)?adapters?)?|\bquantized\s+(?:lora|adapters?)", "qlora"),
            (r"\blora\b|\badapters?\b|\bpeft\b", "lora"),
            (r"\bfull[\s\-]?(?:fine[\s\-]?tun\w*|finetun\w*|parameter\w*|training)", "full_finetune"),
        ),
    )
    r.find_all(r"\bq?lora\b|\bfine[\s\-]?tun\w*|\bfinetun\w*")  # the verb, said again, is understood too


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


def _gpu(r: Reading) -> None:
    gpus = "|".join(_written(g) for g in sorted(gpu_names(), key=len, reverse=True)) + r"|a100"
    if m := r.find(rf"\b(\d+)\s*(?:x|×)\s*({gpus})\b|\b(\d+)\s+({gpus})s?\b"):
        count, gpu = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        r.out["num_gpus"], r.out["target_gpu"] = int(count), _catalog_gpu(gpu)
    elif m := r.find(rf"(?<![\w\-])({gpus})(?![\w\-])"):
        r.out["target_gpu"] = _catalog_gpu(m.group(1))
    elif r.find(_CPU):
        r.out["target_gpu"] = "cpu"
    for m in r.find_all(rf"(?<![\w\-])({gpus})(?![\w\-])"):
        r.not_understood(f"'{r.original(m)}': a second GPU (a job runs on one kind of GPU)")
    if r.out.get("target_gpu") == "a100":
        r.out["target_gpu"] = "a100-40gb"
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


def _budget(r: Reading) -> None:
    limit = r"(?:under|below|less than|at most|max(?:imum)?(?:[\s_]?budget(?:_usd)?)?|budget(?: of)?|cap(?: it)? at|no more than|spend)"
    amounts = r.find_all(
        rf"{limit}\s*(?:to|=|:|of)?\s*(?:\$\s*{NUM}|{NUM}\s*(?:usd|dollars?)\b|{NUM}(?=\s*[,.;]|\s*$))"
    )
    if amounts:  # the tightest: a request can only lower the limit, so a higher amount changes nothing anyway
        r.out["max_budget_usd"] = min(float(next(g for g in m.groups() if g)) for m in amounts)
    for m in r.find_all(rf"\$\s*{NUM}|{NUM}\s*(?:usd|dollars?)\b"):
        r.not_understood(f"'{r.original(m)}': an amount whose purpose I could not tell (a budget is 'under $X')")


def _probe(r: Reading) -> None:
    """A probe attempt first: "probe 4 steps first", "with a probe attempt of 8 steps", "measure it first"."""
    counted = r"\b(?:probe|measure|time|benchmark)(?:\s+attempt)?\s+(?:of\s+)?(\d+)\s+steps?(?:\s+first)?\b"
    if m := r.find(counted):
        r.out["probe_steps"] = int(m.group(1))
    elif r.find(r"\bprobe(?:\s+attempt)?\s+first\b|\bmeasure\s+(?:it\s+|the\s+(?:speed|time)\s+)?first\b"):
        r.out["probe_steps"] = PROBE_ATTEMPT_STEPS
    elif r.find(r"\b(?:a|with)\s+probe\s+attempt\b"):
        r.out["probe_steps"] = PROBE_ATTEMPT_STEPS


def _numbers(r: Reading) -> None:
    words = "|".join(NUMBER_WORDS)
    if m := r.find(rf"{NUM}\s*(?:training\s+)?epochs?\b|\b({words})\s+epochs?\b|\b(an?)\s+(?:single\s+)?epoch\b"):
        value = m.group(1) or m.group(2) or "1"
        number = float(value) if value[0].isdigit() else NUMBER_WORDS.get(value.lower(), 1)
        if number == int(number):
            r.out["num_epochs"] = int(number)
        else:
            r.not_understood(f"'{r.original(m)}': epochs are whole numbers")
    if m := r.find(r"(?:for|max(?:imum)?|at most|up to)?\s*(\d+)\s*(?:training |optimizer )?steps\b"):
        r.out["max_steps"] = int(m.group(1))
    if m := r.find(
        r"(?:micro[\s\-]?)?batch(?:[\s_\-]?size)?\s*(?:of|=|:|to)?\s*(\d+)|(\d+)\s*(?:rows|examples)\s+per\s+batch"
    ):
        r.out["micro_batch_size"] = int(m.group(1) or m.group(2))
    if m := r.find(r"(?:gradient accumulation|grad(?:ient)?[\s_]?acc(?:um)?\w*)(?:\s+steps)?\s*(?:of|=|:)?\s*(\d+)"):
        r.out["gradient_accumulation_steps"] = int(m.group(1))
    if m := r.find(rf"(?:learning[\s_]rate|\blr)\s*(?:of|=|:|to)?\s*{NUM}"):
        r.out["learning_rate"] = float(m.group(1))
    seq = r"(?:seq(?:uence)?[\s_\-]?len(?:gth)?|context(?:\s+length|\s+window)?|max(?:imum)?\s+length)"
    if m := r.find(
        rf"{seq}\s*(?:of|=|:|to)?\s*(\d+)(?:\s*tokens)?|(\d+)[\s\-]tokens?\s+(?:of\s+)?(?:context|sequences?)"
    ):
        r.out["seq_len"] = int(m.group(1) or m.group(2))
    if m := r.find(r"(?:lora[\s_]alpha|\balpha)\s*(?:of|=|:)?\s*(\d+)"):
        r.out["lora_alpha"] = int(m.group(1))
    if m := r.find(r"(?:lora[\s_]r(?:ank)?|\brank|\br)\s*(?:of|=|:)?\s*(\d+)\b"):
        r.out["lora_r"] = int(m.group(1))
    if m := r.find(r"(\d+)\s*warm[\s\-]?up\s*steps|warm[\s\-]?up(?:\s+steps)?\s*(?:of|=|:)?\s*(\d+)"):
        r.out["warmup_steps"] = int(m.group(1) or m.group(2))


def _regime(r: Reading) -> None:
    """Numeric precision, the optimizer, sharding and packing, as people name them."""
    _first(
        r,
        "precision",
        (
            (r"\bpure[\s\-]bf16\b|\bbf16[\s\-_]pure\b", "bf16_pure"),
            (r"\bbf16\b|\bbfloat[\s\-]?16\b", "bf16"),
            (r"\bfp16\b|\bfloat[\s\-]?16\b|\bhalf[\s\-]precision\b", "fp16"),
            (r"\bfp32\b|\bfloat[\s\-]?32\b|\b(?:full|single)[\s\-]precision\b", "fp32"),
        ),
    )
    _first(
        r,
        "optimizer",
        (
            (r"\bpaged[\s\-_]?adamw?[\s\-_]?8[\s\-]?bit\b|\bpaged\s+8[\s\-]?bit\s+adamw?\b", "paged_adamw_8bit"),
            (r"\b8[\s\-]?bit\s+adamw?\b|\badamw?[\s\-_]?8[\s\-]?bit\b", "adamw_8bit"),
            (r"\badamw?\b", "adamw"),
        ),
    )
    if m := r.find(r"(?:(no|without)\s+)?(?:\bfsdp\b|fully[\s\-]sharded(?:\s+data[\s\-]parallel)?|\bsharding\b)"):
        r.out["sharding"] = "none" if m.group(1) else "fsdp"
    if m := r.find(r"(?:(no|without|disable)\s+)?(?:sequence\s+)?packing\b|\b(pack)\s+(?:the\s+)?(?:rows|sequences)"):
        r.out["packing"] = m.group(1) is None


def _levers(r: Reading) -> None:
    if m := r.find(r"(?:(no|without|disable)\s+)?(?:gradient|activation)\s+checkpointing"):
        r.out["gradient_checkpointing"] = m.group(1) is None


def _leftovers(r: Reading) -> None:
    """Whatever could have set a field but was not read: numbers and their units, model names, other languages."""
    for m in r.find_all(_MODEL_WORDS):
        what = "a model I cannot resolve (name it as local:NAME or a Hugging Face id OWNER/NAME)"
        r.not_understood(f"'{r.original(m)}': {what}")
    for m in r.find_all(r"(?<![\w.\-])\d+(?:[.,]\d+)*(?:e-?\d+)?(?:\s*%|\s*[^\W\d_]+)?"):
        r.not_understood(f"'{r.original(m)}': a number with a unit I do not know")
    for m in r.find_all(r"(?<![\w.\-])[^\W\d_]+[\-_]?\d[\w\-]*"):
        r.not_understood(f"'{r.original(m)}': a term I do not know (a precision, an optimizer, a setting?)")
    foreign = [w for w in re.findall(r"[^\W\d_]+", r.rest()) if _is_foreign(w)]
    if foreign:
        words = ", ".join(dict.fromkeys(foreign))
        r.not_understood(f"'{words}': words in a language I do not read (I read requests in English)")


def _is_foreign(word: str) -> bool:
    plain = word.lower().translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}))
    plain = re.sub(r"[éèêë]", "e", re.sub(r"[àâá]", "a", re.sub(r"[îïí]", "i", re.sub(r"[ôó]", "o", plain))))
    return plain in _FOREIGN or not word.isascii()
