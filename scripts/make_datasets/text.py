"""Plain paragraphs (data/text.jsonl) built from the same fact tables."""

from __future__ import annotations

import random

from .phrases import CATEGORIES, DAYS, DEADLINES, PEOPLE, REVIEW_NEG, REVIEW_POS, REVIEW_THINGS, TEAMS, TOPICS
from .support import SUPPORT
from .world import COUNTRIES, GLOSSARY


def make_text(rng: random.Random) -> list[dict[str, str]]:
    """Plain paragraphs: encyclopaedia-style entries, meeting minutes, reviews, product notes and logbook lines."""
    rows = []
    for country, capital, continent, language, currency in COUNTRIES:
        openers = [
            f"{country} is a country in {continent}.",
            f"Located in {continent}, {country} has {capital} as its capital.",
            f"{capital} is the capital of {country}, a country in {continent}.",
        ]
        rows.append(
            f"{rng.choice(openers)} Its official language is {language}, and people pay with {currency}. "
            f"Visitors often start in {capital}, where museums, markets and old neighbourhoods sit close "
            "together."
        )
    for term, definition in GLOSSARY:
        rows.append(f"{definition} The idea of {term} comes up often in textbooks and everyday conversation.")
    for _ in range(30):
        topic, finding, decision, action = rng.choice(TOPICS)
        a, b = rng.sample(PEOPLE, 2)
        rows.append(
            f"Minutes, {rng.choice(DAYS)}: the {rng.choice(TEAMS)} team reviewed {topic}. {a} explained that "
            f"{finding}. The team agreed to {decision}, and {b} will {action} by {rng.choice(DEADLINES)}."
        )
    for _ in range(30):
        thing = rng.choice(REVIEW_THINGS)
        good, bad = rng.choice(REVIEW_POS), rng.choice(REVIEW_NEG)
        stars = rng.randint(1, 5)
        rows.append(
            f"{stars} out of 5 stars for the {thing}. On the plus side, {good}. "
            f"{'Sadly' if stars < 3 else 'That said'}, {bad}."
        )
    for product, scenarios in SUPPORT.items():
        for title, steps, _ in scenarios[:3]:
            rows.append(f"Northwind Cloud {product} note — {title}. " + " ".join(steps))
    for _ in range(25):
        hour, temp, wind = rng.randint(5, 21), rng.randint(-5, 31), rng.randint(0, 60)
        sky = rng.choice(
            ["clear skies", "light rain", "low cloud", "fog in the valleys", "scattered showers", "bright sunshine"]
        )
        rows.append(
            f"Field log, {hour:02d}:00. Temperature {temp} °C, wind {wind} km/h, {sky}. "
            + rng.choice(
                [
                    "Trail conditions good.",
                    "Paths muddy near the river.",
                    "Visibility under 1 km.",
                    "Two groups passed heading north.",
                    "Birds active around the feeder.",
                ]
            )
        )
    for category, items in CATEGORIES.items():
        picks = rng.sample(items, min(len(items), rng.randint(3, 5)))
        rows.append(f"Examples of {category} include {', '.join(picks[:-1])} and {picks[-1]}.")
    unique = list(dict.fromkeys(rows))
    rng.shuffle(unique)
    return [{"text": t} for t in unique]
