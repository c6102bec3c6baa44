"""Instruction records (data/sample.jsonl): Q&A, arithmetic, conversions, classification, lists, rewriting,
summaries, explanations and extraction, each computed from the fact tables so the answers are right."""

from __future__ import annotations

import json
import random

from .phrases import (
    CATEGORIES,
    DAYS,
    DEADLINES,
    INFORMAL_TO_FORMAL,
    PEOPLE,
    REVIEW_NEG,
    REVIEW_POS,
    REVIEW_THINGS,
    SHORTEN,
    TEAMS,
    TIPS,
    TOPICS,
)
from .world import COUNTRIES, GLOSSARY


def _rec(instruction: str, output: str, input_text: str = "") -> dict[str, str]:
    return {"instruction": instruction, "input": input_text, "output": output}


def _fmt(x: float) -> str:
    text = f"{x:,.2f}".rstrip("0").rstrip(".")
    return text or "0"


def _geography(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for country, capital, continent, language, currency in COUNTRIES:
        rows.append(
            _rec(
                rng.choice(
                    [
                        f"What is the capital of {country}?",
                        f"Name the capital city of {country}.",
                        f"Which city is the capital of {country}?",
                    ]
                ),
                f"The capital of {country} is {capital}.",
            )
        )
        kind = rng.randrange(3)
        if kind == 0:
            rows.append(_rec(f"What currency is used in {country}?", f"{country} uses {currency}."))
        elif kind == 1:
            rows.append(_rec(f"Which continent is {country} in?", f"{country} is in {continent}."))
        else:
            rows.append(
                _rec(f"What language is spoken in {country}?", f"The official language of {country} is {language}.")
            )
    for _ in range(6):
        picks = rng.sample(COUNTRIES, 4)
        listed = ", ".join(p[0] for p in picks)
        answer = "\n".join(f"- {p[0]}: {p[1]}" for p in picks)
        rows.append(_rec("Give the capital of each country.", answer, listed))
    return rows


def _maths(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(12):
        speed, hours = rng.choice([40, 60, 80, 90, 120]), rng.choice([1.5, 2, 2.5, 3, 4])
        rows.append(
            _rec(
                f"A train travels at {speed} km/h for {_fmt(hours)} hours. How far does it go?",
                f"Distance = speed × time = {speed} × {_fmt(hours)} = {_fmt(speed * hours)} km.",
            )
        )
    for _ in range(10):
        price, pct = rng.choice([20, 45, 80, 120, 250, 60]), rng.choice([10, 15, 20, 25, 30])
        final = price * (100 - pct) / 100
        rows.append(
            _rec(
                f"A jacket costs ${price} and is {pct}% off. What is the sale price?",
                f"The discount is {pct}% of ${price} = ${_fmt(price * pct / 100)}, so the sale price is "
                f"${_fmt(final)}.",
            )
        )
    for _ in range(10):
        nums = [rng.randint(2, 99) for _ in range(rng.randint(3, 6))]
        mean = sum(nums) / len(nums)
        rows.append(
            _rec(
                "Calculate the average of these numbers.",
                f"The sum is {sum(nums)} and there are {len(nums)} numbers, so the average is {_fmt(mean)}.",
                ", ".join(map(str, nums)),
            )
        )
    for _ in range(8):
        a, b = rng.randint(12, 99), rng.randint(3, 19)
        rows.append(_rec(f"What is {a} times {b}?", f"{a} × {b} = {a * b}."))
    return rows


def _conversions(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(28):
        kind = rng.randrange(4)
        if kind == 0:
            km = rng.choice([3, 5, 10, 21.1, 42.2, 100, 250])
            rows.append(
                _rec(f"Convert {_fmt(km)} kilometres to miles.", f"{_fmt(km)} km is about {km * 0.621371:.1f} miles.")
            )
        elif kind == 1:
            c = rng.choice([-10, 0, 12, 20, 25, 37, 100])
            rows.append(
                _rec(
                    f"What is {c} °C in Fahrenheit?",
                    f"{c} °C = {_fmt(c * 9 / 5 + 32)} °F (multiply by 9/5, then add 32).",
                )
            )
        elif kind == 2:
            kg = rng.choice([1, 2.5, 5, 12, 70, 80])
            rows.append(_rec(f"How many pounds is {_fmt(kg)} kg?", f"{_fmt(kg)} kg is about {kg * 2.20462:.1f} lb."))
        else:
            minutes = rng.choice([90, 135, 200, 75, 48, 310])
            h, m = divmod(minutes, 60)
            rows.append(
                _rec(
                    f"Convert {minutes} minutes to hours and minutes.",
                    f"{minutes} minutes is {h} hour{'s' if h != 1 else ''} and {m} minutes.",
                )
            )
    return rows


def _classification(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(40):
        thing = rng.choice(REVIEW_THINGS)
        label = rng.choice(["Positive", "Negative", "Mixed"])
        if label == "Positive":
            parts = rng.sample(REVIEW_POS, 2)
            text = f"I bought the {thing} last month: {parts[0]} and {parts[1]}. Would recommend."
            why = "the reviewer praises it and recommends it"
        elif label == "Negative":
            parts = rng.sample(REVIEW_NEG, 2)
            text = f"Really disappointed with this {thing}. It {parts[0]}, and {parts[1]}."
            why = "the reviewer only reports problems"
        else:
            text = f"The {thing} is fine overall: {rng.choice(REVIEW_POS)}, but {rng.choice(REVIEW_NEG)}."
            why = "the review names both a strength and a problem"
        instruction = rng.choice(
            [
                "Classify the sentiment of this review as Positive, Negative or Mixed.",
                "Is this review positive, negative or mixed?",
                "What is the sentiment of this review?",
            ]
        )
        output = label if rng.random() < 0.5 else f"{label}: {why}."
        rows.append(_rec(instruction, output, text))
    return rows


def _lists(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for category, items in CATEGORIES.items():
        for n in sorted(rng.sample(range(3, min(6, len(items)) + 1), k=min(2, len(items) - 2))):
            picks = rng.sample(items, n)
            style = rng.randrange(2)
            body = "\n".join(f"{i}. {p}" for i, p in enumerate(picks, 1)) if style else ", ".join(picks) + "."
            rows.append(_rec(f"List {n} {category}.", body))
    for _ in range(12):
        words = rng.sample([w for items in CATEGORIES.values() for w in items if " " not in w], rng.randint(4, 7))
        rows.append(_rec("Sort these words alphabetically.", ", ".join(sorted(words, key=str.lower)), ", ".join(words)))
    for _ in range(8):
        sentence = rng.choice(SHORTEN)[0]
        rows.append(_rec("How many words are in this sentence?", f"It has {len(sentence.split())} words.", sentence))
    return rows


def _rewriting(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for informal, formal in INFORMAL_TO_FORMAL:
        rows.append(
            _rec(
                rng.choice(
                    [
                        "Rewrite this message in a formal tone.",
                        "Make this sentence more professional.",
                        "Rewrite formally.",
                    ]
                ),
                formal,
                informal,
            )
        )
    for long, short in SHORTEN:
        rows.append(
            _rec(
                rng.choice(
                    [
                        "Make this sentence more concise.",
                        "Shorten this sentence.",
                        "Rewrite this more briefly without losing meaning.",
                    ]
                ),
                short,
                long,
            )
        )
    for _informal, formal in rng.sample(INFORMAL_TO_FORMAL, 8):
        rows.append(_rec("Convert this sentence to upper case.", formal.upper(), formal))
    return rows


def _summaries(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(36):
        topic, finding, decision, action = rng.choice(TOPICS)
        team, day, deadline = rng.choice(TEAMS), rng.choice(DAYS), rng.choice(DEADLINES)
        a, b = rng.sample(PEOPLE, 2)
        notes = (
            f"The {team} team met on {day} to discuss {topic}. {a} reported that {finding}. "
            f"Several options were discussed, including doing nothing until next quarter. "
            f"In the end the team agreed to {decision}. {b} will {action} by {deadline}."
        )
        kind = rng.randrange(3)
        if kind == 0:
            rows.append(
                _rec(
                    "Summarise these meeting notes in one sentence.",
                    f"The {team} team agreed to {decision}, and {b} will {action} by {deadline}.",
                    notes,
                )
            )
        elif kind == 1:
            rows.append(
                _rec(
                    "What was decided in this meeting, and who owns the next step?",
                    f"Decision: {decision}. Owner: {b}, who will {action} by {deadline}.",
                    notes,
                )
            )
        else:
            rows.append(
                _rec(
                    "Write a short summary of these notes for someone who missed the meeting.",
                    f"{a} found that {finding}. The team decided to {decision}. Next step: {b} will "
                    f"{action} by {deadline}.",
                    notes,
                )
            )
    return rows


def _explanations(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for term, definition in GLOSSARY:
        instruction = rng.choice(
            [
                f"What is {term}?",
                f"Explain {term} in simple terms.",
                f"Define {term}.",
                f"Can you explain what {term} means?",
            ]
        )
        output = definition if rng.random() < 0.7 else definition.split(". ")[0].rstrip(".") + "."
        rows.append(_rec(instruction, output))
    for question, answer in TIPS:
        rows.append(_rec(question, answer))
    return rows


def _extraction(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    domains = ["example.com", "mail.example.org", "acme.test", "contoso.example"]
    months = ["January", "March", "April", "June", "September", "November"]
    for _ in range(14):
        name = rng.choice(PEOPLE)
        email = f"{name.lower()}.{rng.choice(['ops', 'hr', 'sales', 'it'])}@{rng.choice(domains)}"
        text = (
            f"Hi all, for questions about the {rng.choice(TEAMS)} rollout please write to {email} "
            f"rather than replying to this thread. — {name}"
        )
        rows.append(_rec("Extract the email address from this message.", email, text))
    for _ in range(12):
        day, month, year = rng.randint(1, 28), rng.choice(months), rng.choice([2023, 2024, 2025])
        name, city = rng.choice(PEOPLE), rng.choice(COUNTRIES)[1]
        text = f"{name} will present the results in {city} on {month} {day}, {year}, right after lunch."
        rows.append(
            _rec(
                "Extract the person, place and date from the sentence as JSON.",
                json.dumps({"person": name, "place": city, "date": f"{month} {day}, {year}"}, ensure_ascii=False),
                text,
            )
        )
    for _ in range(8):
        name, age, city = rng.choice(PEOPLE), rng.randint(21, 64), rng.choice(COUNTRIES)[1]
        rows.append(
            _rec(
                "Convert this description into a JSON object with name, age and city.",
                json.dumps({"name": name, "age": age, "city": city}, ensure_ascii=False),
                f"{name} is {age} years old and lives in {city}.",
            )
        )
    return rows


def make_sample(rng: random.Random) -> list[dict[str, str]]:
    """Instruction records across task types, shuffled; answers are computed, so they are right."""
    rows: list[dict[str, str]] = []
    for part in (
        _geography,
        _maths,
        _conversions,
        _classification,
        _lists,
        _rewriting,
        _summaries,
        _explanations,
        _extraction,
    ):
        rows.extend(part(rng))
    unique = list({json.dumps(r, sort_keys=True): r for r in rows}.values())
    rng.shuffle(unique)
    return unique
