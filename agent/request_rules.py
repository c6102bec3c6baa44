"""The offline planner's reading of a request: rules that map words to spec fields, and account for the rest.

Every rule that maps a part of the request to a field marks that part as read. What is left is searched
for what could have changed the spec: a number (with whatever unit follows it), an accelerator, a model
name, a word in another language. Each is named in ``not_understood``, so the intake asks about it
instead of taking a default. Plain English filler ("please", "with", "the") changes nothing and is let be.
"""

from __future__ import annotations

import re
from typing import Any

from agent.gpu_words import read_gpu
from agent.read_only_rules import read_only_request
from agent.request_reading import INT, NUM, NUMBER_WORDS, SIGN, Reading, number, whole
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
_SUFFIX = r"\.(?:jsonl|json|csv|parquet)\b"
_FILE = rf"(?:\.{{0,2}}/|~/)?(?:[\w.\-]+/)*[\w.\-]+{_SUFFIX}"
_FOLDER = r"(?<![\w/.:-])(?:\.{0,2}/|~/|/)?(?:[\w.\-]+/)+(?![\w.\-])"
_ABSOLUTE = r"(?<!\S)(?:\.\./|/)[\w./\-]+"
_HUB_DATA = r"\bhf:[\w.\-]+(?:/[\w.\-]+)?"
_OWNER_NAME = r"(?<![\w/:.\-])[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*(?![\w/])"
_DATA_CONTEXT = r"(?:\bon|\bdata(?:set)?|\bfrom|\bwith|\bin|\busing)\s+(?:the\s+|my\s+)?(?:data(?:set)?\s+)?$"
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


def read_request(text: str) -> tuple[dict[str, Any], list[str]]:
    """Fields the request sets, and the parts of it no rule could map (each with what it seems to be)."""
    if read_only := read_only_request(text):  # help, the runs, a preview, a try, a report: not a fine-tune
        return read_only, []
    clean = " ".join(text.split())
    lower = clean.lower()
    reading = Reading(clean, lower if len(lower) == len(clean) else clean)
    readers = (_lineage, _data, _model, _method, _intent, read_gpu, _budget, _regime, _probe, _numbers, _levers)
    for read in (*readers, _leftovers):
        read(reading)
    return reading.out, reading.unknown


# A run named by the person: its id (or a unique start of it), the last run, or the run that stopped.
_RUN_ID = r"\d{8}[\w\-]*|(?=[\w\-]*\d)(?=[\w\-]*[a-z_\-])[a-z0-9][\w\-]{2,}"
_RUN_REF = (
    r"(?:(?P<stopped>(?:the\s+|my\s+)(?:stopped|interrupted|failed|unfinished|crashed)\s+(?:training\s+)?"
    r"(?:run|job|training)\b|(?:the\s+)?(?:run|training|job)\s+that\s+(?:was\s+)?(?:stopped|interrupted|failed|"
    r"crashed|died)\b)|(?P<latest>(?:the\s+|my\s+)?(?:last|latest|previous|most\s+recent|newest)\s+(?:training\s+)?"
    rf"(?:run|job|one|training)\b)|run\s+(?:id\s+)?`?(?P<id>{_RUN_ID})`?|`?(?P<bare>\d{{8}}-[\w\-]*\w)`?)"
)
_CONTINUE = rf"\b(?:continue|resume|pick\s+up|carry\s+on(?:\s+with)?)(?:\s+(?:training|to\s+train))?\s+{_RUN_REF}"
_WEIGHTS = r"(?:trained\s+)?(?:lora\s+)?(?:adapter|weights|model|checkpoint)"
_FROM_RUN = (
    r"\b(?:start(?:ing)?\s+(?:it\s+)?from|build(?:ing)?\s+on(?:\s+top\s+of)?|on\s+top\s+of|from|on|of)\s+"
    rf"(?:the\s+{_WEIGHTS}\s+(?:of|from)\s+)?{_RUN_REF}(?:['’]s\s+{_WEIGHTS})?"
)


def _run_named(r: Reading, match: re.Match[str]) -> str:
    """The run a reference names: 'stopped', 'latest', or the id as the person wrote it."""
    if match.group("stopped"):
        return "stopped"
    if match.group("latest"):
        return "latest"
    return r.original(match, "id" if match.group("id") else "bare")


def _lineage(r: Reading) -> None:
    """A run to continue ("continue the run that stopped", "resume run 20261207-…"), or a finished run a new run
    starts from ("start from the adapter of run X", "train 2 more epochs on the last run"); "N more epochs" alone
    builds on the last run."""
    if m := r.find(_CONTINUE):
        r.out["continue_run"] = _run_named(r, m)
    elif m := r.find(_FROM_RUN):
        r.out["from_run"] = _run_named(r, m)
    words = "|".join(NUMBER_WORDS)
    more = (
        rf"(?:{INT}|\b({words}|an?|one))\s+(?:more|additional|extra)\s+epochs?\b|\banother\s+(?:({words})\s+)?epochs?\b"
    )
    if m := r.find(more):
        count = m.group(1) or m.group(2) or m.group(3)
        r.out["num_epochs"] = whole(count) if count and count[-1].isdigit() else NUMBER_WORDS.get(count or "one", 1)
        if "continue_run" not in r.out and "from_run" not in r.out:
            r.out["from_run"] = "latest"


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


def _intent(r: Reading) -> None:
    """Whether the person wants only the price ("just the estimate", "how much would it cost to…", "price it but do
    not train"), or, later, the run itself ("go ahead", "run it"): the intake keeps the flag until it is lifted."""
    dont = r"(?:don['’]?t|do not|never)\s+(?:actually\s+)?"
    only = (
        r"\b(?:just|only)\s+(?:give\s+me\s+)?(?:an?\s+|the\s+)?(?:cost\s+|price\s+)?(?:estimate|quote|price)s?\b"
        r"|\b(?:cost\s+)?estimate\s+only\b|\bonly\s+estimate\b|\bjust\s+estimate\b"
        r"|\bhow\s+much\s+(?:would|will|does|might|could)\s+(?:it|that|this)\s+cost(?:\s+(?:me\s+)?to)?\b"
        r"|\bwhat\s+(?:would|will)\s+(?:it|that|this)\s+cost(?:\s+to)?\b|\bprice\s+(?:it|this|that)(?:\s+out)?\b"
        rf"|\b{dont}(?:run|train|start|launch)\w*(?:\s+(?:it|anything|a\s+thing|the\s+(?:job|run|training)))?\b"
        r"|\bwithout\s+(?:running|training|starting)\s+(?:it|anything)\b|\bdry[\s\-]?run\b"
    )
    if r.find_all(only):
        r.out["estimate_only"] = True
    elif r.find(r"\bgo\s+ahead\b|\b(?:run|train|start|launch)\s+it\b|\bproceed\b|\bdo\s+it\b"):
        r.out["estimate_only"] = False


def _budget(r: Reading) -> None:
    """A hard limit for this run, in the ways people say one: "under $3", "don't spend more than $3", "keep it below
    2 dollars", "max $5", "budget of $4", "at most 3 USD", "cap it at $1.50", "a $2 budget"."""
    money = rf"(?:\$\s*{NUM}|{NUM}\s*(?:usd|dollars?|bucks)\b|{NUM}\s*\$)"
    bare = rf"{NUM}(?=\s*[,.;]|\s*$)"  # "under 3." after a word that can only mean money
    neg = r"(?:don['’]?t|do\s+not|never|not|shouldn['’]?t|must\s+not|mustn['’]?t|won['’]?t)"
    limit = (
        r"(?:under|below|less than|at most|no more than|max(?:imum)?(?:[\s_]?budget(?:_usd)?)?|budget(?: of)?"
        r"|cap(?:ped)?(?: it| this| the (?:cost|spend|bill))?(?: at)?|spend)"
    )
    money_only = (
        rf"(?:{neg}\s+(?:(?:spend|pay|go|cost|run|be)\s+)?(?:more than|over|above|beyond|exceed(?:ing)?)"
        r"|lower than|up to|within|(?:budget|limit|cap)(?: is| at| of)?|limit it to)"
    )
    after = r"\s*(?:budget|max(?:imum)?|limit|cap|tops|or less|at (?:the )?most)\b"
    amounts = r.find_all(
        rf"{limit}\s*(?:to|=|:|of)?\s*(?:{money}|{bare})|{money_only}\s*(?:=|:)?\s*{money}|{money}{after}"
    )
    if amounts:  # the tightest: a request can only lower the limit, so a higher amount changes nothing anyway
        r.out["max_budget_usd"] = min(number(next(g for g in m.groups() if g)) for m in amounts)
    for m in r.find_all(money):
        r.not_understood(f"'{r.original(m)}': an amount whose purpose I could not tell (a budget is 'under $X')")


def _probe(r: Reading) -> None:
    """A probe attempt first: "probe 4 steps first", "with a probe attempt of 8 steps", "measure it first"."""
    counted = rf"\b(?:probe|measure|time|benchmark)(?:\s+attempt)?\s+(?:of\s+)?{INT}\s+steps?(?:\s+first)?\b"
    if m := r.find(counted):
        r.out["probe_steps"] = whole(m.group(1))
    elif r.find(r"\bprobe(?:\s+attempt)?\s+first\b|\bmeasure\s+(?:it\s+|the\s+(?:speed|time)\s+)?first\b"):
        r.out["probe_steps"] = PROBE_ATTEMPT_STEPS
    elif r.find(r"\b(?:a|with)\s+probe\s+attempt\b"):
        r.out["probe_steps"] = PROBE_ATTEMPT_STEPS


def _numbers(r: Reading) -> None:
    words = "|".join(NUMBER_WORDS)
    if m := r.find(rf"{NUM}\s*(?:training\s+)?epochs?\b|\b({words})\s+epochs?\b|\b(an?)\s+(?:single\s+)?epoch\b"):
        value = number(m.group(1)) if m.group(1) else NUMBER_WORDS.get((m.group(2) or "one").lower(), 1)
        if value == int(value):
            r.out["num_epochs"] = int(value)
        else:
            r.not_understood(f"'{r.original(m)}': epochs are whole numbers")
    if m := r.find(rf"(?:for|max(?:imum)?|at most|up to)?\s*{INT}\s*(?:training |optimizer )?steps\b"):
        r.out["max_steps"] = whole(m.group(1))
    if m := r.find(
        rf"(?:micro[\s\-]?)?batch(?:[\s_\-]?size)?\s*(?:of|=|:|to)?\s*{INT}|{INT}\s*(?:rows|examples)\s+per\s+batch"
    ):
        r.out["micro_batch_size"] = whole(m.group(1) or m.group(2))
    if m := r.find(rf"(?:gradient accumulation|grad(?:ient)?[\s_]?acc(?:um)?\w*)(?:\s+steps)?\s*(?:of|=|:)?\s*{INT}"):
        r.out["gradient_accumulation_steps"] = whole(m.group(1))
    if m := r.find(rf"(?:learning[\s_]rate|\blr)\s*(?:of|=|:|to)?\s*{NUM}"):
        r.out["learning_rate"] = number(m.group(1))
    _seq_len(r)
    if m := r.find(rf"(?:lora[\s_]alpha|\balpha)\s*(?:of|=|:)?\s*{INT}"):
        r.out["lora_alpha"] = whole(m.group(1))
    if m := r.find(rf"(?:lora[\s_]r(?:ank)?|\brank|\br)\s*(?:of|=|:)?\s*{INT}\b"):
        r.out["lora_r"] = whole(m.group(1))
    if m := r.find(rf"{INT}\s*warm[\s\-]?up\s*steps|warm[\s\-]?up(?:\s+steps)?\s*(?:of|=|:)?\s*{INT}"):
        r.out["warmup_steps"] = whole(m.group(1) or m.group(2))


def _seq_len(r: Reading) -> None:
    """The sequence length, also in thousands of tokens as people write it: "8k context", "seq len 2K" (x1024)."""
    seq = r"(?:seq(?:uence)?[\s_\-]?len(?:gth)?|context(?:\s+length|\s+window)?|max(?:imum)?\s+length)"
    length = rf"({SIGN}\d+(?:\.\d+)?)(\s?k\b)?"
    m = r.find(
        rf"{seq}\s*(?:of|=|:|to|is)?\s*{length}(?:\s*tokens?)?"
        rf"|(?<![\w.]){length}[\s\-]*(?:tokens?[\s\-]+)?(?:of\s+)?(?:context(?:\s+length|\s+window)?|{seq})\b"
        rf"|(?<![\w.]){length}[\s\-]*tokens?[\s\-]+(?:of\s+)?sequences?\b"
    )
    if m is None:
        return
    value, thousands = next((m.group(i), m.group(i + 1)) for i in (1, 3, 5) if m.group(i))
    tokens = number(value) * (1024 if thousands else 1)
    if tokens == int(tokens):
        r.out["seq_len"] = int(tokens)
    else:
        r.not_understood(f"'{r.original(m)}': a sequence length is a whole number of tokens")


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
    for m in r.find_all(r"(?<![\w.\-])[-−]?\d+(?:[.,]\d+)*(?:e-?\d+)?(?:\s*%|\s*[^\W\d_]+)?"):
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
