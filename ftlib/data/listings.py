"""The ``listings`` sample: rental listings as structured attributes and a description written from them
(data-to-text). The phrasings are data (``data/generators/listings.yaml``); the code fills their slots."""

from __future__ import annotations

import random
import re

from ftlib.data.banks import distinct, load_bank

_BANK = load_bank("listings")
PROPERTY_TYPES = tuple(_BANK["property_types"])
CITIES = tuple(_BANK["cities"])
FEATURES = tuple(_BANK["features"])
OPENINGS = tuple(_BANK["openings"])
ROOMS = tuple(_BANK["rooms"])
FEATURE_SENTENCES = tuple(_BANK["feature_sentences"])
TERMS = tuple(_BANK["terms"])


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}" if n else f"no separate {word}"


def make_listing(rng: random.Random, index: int) -> dict:
    kind = rng.choice(PROPERTY_TYPES)
    bedrooms = 0 if kind == "studio" else rng.randint(1, 5 if kind == "house" else 3)
    attributes = {
        "type": kind,
        "city": rng.choice(CITIES),
        "bedrooms": bedrooms,
        "bathrooms": rng.randint(1, max(1, bedrooms)),
        "size_sqm": rng.randint(25, 60) + 22 * bedrooms,
        "rent_per_month": rng.randrange(550, 3200, 25),
        "features": sorted(rng.sample(FEATURES, rng.randint(1, 3))),
        "furnished": rng.random() < 0.5,
        "pets_allowed": rng.random() < 0.4,
    }
    features = attributes["features"]
    feature_text = features[0] if len(features) == 1 else ", ".join(features[:-1]) + " and " + features[-1]
    opening = re.sub(r"\bA (?=[aeiou])", "An ", rng.choice(OPENINGS).format(type=kind, city=attributes["city"], A="A"))
    bedroom_text = "a studio layout" if kind == "studio" else _count(bedrooms, "bedroom")
    sentences = [
        f"{opening} "
        + rng.choice(ROOMS).format(
            bedrooms=bedroom_text, bathrooms=_count(attributes["bathrooms"], "bathroom"), size=attributes["size_sqm"]
        ),
        rng.choice(FEATURE_SENTENCES).format(features=feature_text),
        rng.choice(TERMS).format(
            price=f"{attributes['rent_per_month']:,}",
            furnished="furnished" if attributes["furnished"] else "unfurnished",
            pets="pets are welcome" if attributes["pets_allowed"] else "no pets are allowed",
        ),
    ]
    return {"id": f"l{index:05d}", "attributes": attributes, "description": " ".join(sentences)}


def generate_listings(n: int = 1500, seed: int = 99) -> list[dict]:
    """``n`` listings with distinct descriptions; deterministic for a given seed."""
    return distinct(make_listing, n, random.Random(seed), lambda r: r["description"], max_similarity=0.65)
