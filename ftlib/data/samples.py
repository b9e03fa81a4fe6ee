"""Generators for the course's own sample datasets (seeded and deterministic).

``support_tickets``: customer messages to an internet and TV provider, each labelled with a
``category``, an ``urgency`` and a short first ``reply``. Urgency follows written rules:

* high: service fully down, security or fraud, money already lost, safety, a business or
  medical dependency, or repeated failures;
* medium: degraded service, or a billing error or request that needs action;
* low: questions, information and small requests.

The variety is data, not code: ``data/generators/support_tickets.yaml`` holds, per category and
urgency, many independent phrasings; per high-urgency rule, its own statements or cue sentences;
hard negatives that share words with a rule without meeting it; and the registers (terse, chatty,
formal, non-native, texting...) and layouts a ticket is written in. The code below only composes:
it picks a phrasing, fills its slots and places it among openers, context, unrelated asides, details
and sign-offs, so the decisive cue may sit at the start, the end or in the middle of the text.

Periods: ``period="default"`` is the help desk the training data comes from; ``period="later"`` is the same
desk some months on (the banks' ``later`` section): new products and plans in the slots, a new TV-streaming
service whose failures are a new kind of outage, more outage and account tickets and fewer billing ones, and new
statements in every category. Labels keep the same schema and the same urgency rules; only the text and the mix
drift. ``write_later_tickets`` writes the batch the drift lesson scores.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ftlib.core.fileio import write_json
from ftlib.data.records import write_jsonl

TICKET_BANKS = Path(__file__).resolve().parents[2] / "data" / "generators" / "support_tickets.yaml"
CATEGORY_WEIGHTS = {
    "billing": 1.3,
    "outage": 1.2,
    "slow_speed": 1.0,
    "hardware": 1.0,
    "account": 0.9,
    "cancellation": 0.8,
}
PERIODS = ("default", "later")  # "later": the banks' ``later`` section applied on top of the default ones
LATER_TICKETS = 600  # the later batch the drift lesson scores: a week or two of a small desk's tickets
HARD_NEGATIVE_RATE = 0.15  # share of low and medium tickets written as a hard negative
ESCALATE_RATE = 0.5  # share of a high cell's escalatable rules written as a medium statement plus the rule's cue


@cache
def ticket_banks() -> dict:
    """The phrase banks of the support-ticket generator (``data/generators/support_tickets.yaml``)."""
    import yaml

    return yaml.safe_load(TICKET_BANKS.read_text(encoding="utf-8"))


@cache
def period_banks(period: str = "default") -> dict:
    """The banks of one period: the default ones, or a copy with a later section applied (``PERIODS``).

    A later section replaces ``category_weights`` and the slots it names (adding new ones), adds its ``contexts``
    to ``frame.contexts`` and, per cell, adds its statements, rule statements and replies to the cell's own
    (each new statement ``new_statement_weight`` times, so that it is drawn that much more often than an old one).
    """
    banks = ticket_banks()
    if period == "default":
        return banks
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    change = banks[period]
    merged = copy.deepcopy({key: value for key, value in banks.items() if key not in PERIODS})
    merged["category_weights"] = dict(change["category_weights"])
    merged["slots"] |= change.get("slots") or {}
    merged["frame"]["contexts"] += change.get("contexts") or []
    merged["id_prefix"] = change.get("id_prefix", "t")
    repeat = int(change.get("new_statement_weight", 1))  # listed that many times: drawn that much more often
    for category, cells in (change.get("cells") or {}).items():
        for urgency, cell in cells.items():
            target = merged["cells"][category][urgency]
            if cell.get("statements"):
                target["statements"] = target.get("statements", []) + cell["statements"] * repeat
            for rule, texts in (cell.get("rules") or {}).items():
                target["rules"] = dict(target.get("rules") or {})
                target["rules"][rule] = target["rules"].get(rule, []) + texts * repeat
            replies = cell.get("replies") or []
            if isinstance(replies, dict):
                for rule, texts in replies.items():
                    target["replies"][rule] = target["replies"].get(rule, []) + texts
            else:
                target["replies"] = target["replies"] + replies
    return merged


@dataclass(frozen=True)
class Phrasing:
    """One way of stating a ticket's problem, with the labels it carries.

    ``rule``: the high-urgency rule it meets (a high statement or a cue), or, for a hard negative, the rule it
    resembles without meeting; None for an ordinary low or medium statement.
    """

    category: str
    urgency: str
    text: str
    rule: str | None = None
    hard_negative: bool = False


def ticket_phrasings() -> list[Phrasing]:
    """Every statement of the banks: ordinary ones, the high rules' own statements and the hard negatives."""
    phrasings = []
    for category, cells in ticket_banks()["cells"].items():
        for urgency, cell in cells.items():
            phrasings += [Phrasing(category, urgency, text) for text in cell.get("statements", ())]
            for rule, texts in (cell.get("rules") or {}).items():
                phrasings += [Phrasing(category, urgency, text, rule) for text in texts]
            for rule, texts in (cell.get("hard_negatives") or {}).items():
                phrasings += [Phrasing(category, urgency, text, rule, hard_negative=True) for text in texts]
    return phrasings


def _cue_groups(rule: str) -> dict[str, list[str]]:
    """A cue rule's cue sentences by group (a plain list of cues is one group, ``all``)."""
    cues = ticket_banks()["rules"][rule]["cues"]
    return dict(cues) if isinstance(cues, dict) else {"all": list(cues)}


def rule_cues() -> dict[str, tuple[str, ...]]:
    """Every cue sentence of each rule that raises a medium problem to high (a dependency, repeated failures)."""
    return {
        name: tuple(cue for cues in _cue_groups(name).values() for cue in cues)
        for name, rule in ticket_banks()["rules"].items()
        if rule["kind"] == "cue"
    }


@cache
def escalation_cues(category: str) -> dict[str, tuple[str, ...]]:
    """The cue rules that may raise a medium ``category`` statement to high, each with the cues that fit it."""
    escalate = ticket_banks()["cells"][category]["medium"].get("escalate") or {}
    if isinstance(escalate, list):  # rule names alone: every cue of each
        escalate = {rule: ["all"] for rule in escalate}
    result = {}
    for rule, groups in escalate.items():
        bank = _cue_groups(rule)
        result[rule] = tuple(cue for group in (list(bank) if groups == ["all"] else groups) for cue in bank[group])
    return result


def escalations(category: str) -> tuple[str, ...]:
    """The cue rules that may raise a medium ``category`` statement to high."""
    return tuple(escalation_cues(category))


REPEAT_CUES = rule_cues()["repeated"]
DEPENDENCY_CUES = rule_cues()["dependency"]


def _slot_values(rng: random.Random, banks: dict) -> dict:
    values = {name: rng.choice(options) for name, options in banks["slots"].items()}
    values.update(
        amount=f"{rng.randint(20, 180)}.{rng.choice(['00', '99', '50'])}",
        amount2=f"{rng.randint(60, 260)}.{rng.choice(['00', '99'])}",
        years=rng.randint(1, 15),
        account=rng.randint(10_000_000, 99_999_999),
    )
    return values


def _weighted(rng: random.Random, items: list, weights: list[float]):
    return rng.choices(items, weights=weights)[0]


def _sentence(text: str, rng: random.Random, end: str = ".") -> str:
    """A part as written: usually capitalised, usually ending in punctuation."""
    if not text:
        return text
    if rng.random() < 0.7:
        text = text[0].upper() + text[1:]
    if text[-1] not in ".?!:)" and rng.random() < 0.8:
        text += end
    return text


def _write(text: str, register: dict, rng: random.Random) -> str:
    """Apply a register's habits to the body: non-native rewrites, dropped articles, slang, lower case, typos."""
    banks = ticket_banks()
    if register.get("rewrites"):
        for pattern, replacement in banks["rewrites"]:
            if rng.random() < register["rewrites"]:
                text = re.sub(pattern, replacement, text, count=1)
    if register.get("drop_articles"):
        text = re.sub(
            r"\b(?:the|a) (?=[a-z])", lambda m: "" if rng.random() < register["drop_articles"] else m[0], text
        )
    if rng.random() < register.get("slang", 0):
        for word, slang in banks["slang"].items():
            text = re.sub(rf"\b{word}\b", slang, text, flags=re.IGNORECASE)
    if rng.random() < register.get("lower", 0):
        text = text.lower()
    for _ in range(2 if register.get("typo", 0) > 0.4 else 1):
        if rng.random() < register.get("typo", 0):
            words = text.split(" ")
            index = rng.randrange(len(words))
            word = words[index]
            if len(word) > 3 and word.isalpha():
                cut = rng.randrange(len(word) - 1)
                words[index] = word[:cut] + word[cut + 1] + word[cut] + word[cut + 2 :]
            text = " ".join(words)
    return text


def _choose_problem(rng: random.Random, banks: dict) -> tuple[str, str, str, str, str | None, bool]:
    """``(category, urgency, statement, cue, rule, hard_negative)`` of one ticket, before its slots are filled."""
    cells = banks["cells"]
    mix = banks.get("category_weights") or CATEGORY_WEIGHTS
    category = _weighted(rng, list(mix), list(mix.values()))
    urgency = rng.choice(("low", "medium", "high"))
    cell = cells[category][urgency]
    if urgency != "high":
        negatives = [(rule, text) for rule, texts in (cell.get("hard_negatives") or {}).items() for text in texts]
        if negatives and rng.random() < HARD_NEGATIVE_RATE:
            rule, text = rng.choice(negatives)
            return category, urgency, text, "", rule, True
        return category, urgency, rng.choice(cell["statements"]), "", None, False
    direct = cell.get("rules") or {}
    rules = sorted(set(direct) | set(escalations(category)))
    weights = [banks["rules"][rule].get("weight", 1.0) * (2.0 if rule in direct else 1.0) for rule in rules]
    rule = _weighted(rng, rules, weights)  # a cell's own rules (its statements) count double
    if rule in direct and (rule not in escalations(category) or rng.random() >= ESCALATE_RATE):
        return category, urgency, rng.choice(direct[rule]), "", rule, False
    statement = rng.choice(cells[category]["medium"]["statements"])
    return category, urgency, statement, rng.choice(escalation_cues(category)[rule]), rule, False


def _slots(text: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", text))


def _reply(replies: list[str], statement: str, rng: random.Random) -> str:
    """A reply that names only what the ticket says: one naming the statement's own slots (its amount, speed,
    add-on...) when there is one, most of the time; else one without slots."""
    fitting = [reply for reply in replies if _slots(reply) <= _slots(statement)]
    specific = [reply for reply in fitting if _slots(reply)]
    return rng.choice(specific if specific and rng.random() < 0.7 else [r for r in fitting if not _slots(r)])


def compose_ticket(rng: random.Random, index: int, period: str = "default") -> tuple[dict, dict]:
    """One ticket record and how it was made: ``{"rule", "hard_negative", "decisive", "parts"}``.

    ``decisive`` is the sentence that sets the urgency (a cue if there is one, else the statement), and
    ``parts`` the ticket's parts in order, before the register's rewrites, so a test can see where it sits.
    ``period``: one of ``PERIODS`` (see the module docstring).
    """
    banks = period_banks(period)
    category, urgency, statement, cue, rule, hard_negative = _choose_problem(rng, banks)
    names = list(banks["registers"])
    name = _weighted(rng, names, [banks["registers"][n]["weight"] for n in names])
    register = banks["registers"][name]
    layouts = banks["layouts"][register.get("layouts", "normal")]
    layout = list(_weighted(rng, layouts, [layout["weight"] for layout in layouts])["parts"])
    if cue and "cue" not in layout:
        layout.insert(layout.index("statement") + 1, "cue")
    values = _slot_values(rng, banks)
    frame = banks["frame"]
    end = "!" if urgency == "high" and rng.random() < 0.3 else "."
    texts = {
        "opener": rng.choice(register["openers"]),
        "context": rng.choice(frame["contexts"]) if rng.random() < 0.7 else "",
        "statement": _sentence(statement, rng, end),
        "cue": _sentence(cue, rng),
        "detail": rng.choice(frame["details"][category]) if urgency != "low" and not hard_negative else "",
        "lead": rng.choice(frame["leads"]),
        "aside": rng.choice(frame["asides"]),
        "ask": rng.choice(register["asks"] + (register["problem_asks"] if urgency != "low" else [])),
        "signoff": rng.choice(register["signoffs"]),
    }
    parts = [(part, texts[part].format(**values)) for part in layout if texts[part]]
    separator = register.get("separator", " ")
    body = " ".join(text for part, text in parts if part not in ("opener", "signoff"))
    opener = next((text for part, text in parts if part == "opener"), "")
    signoff = next((text for part, text in parts if part == "signoff"), "")
    ticket = separator.join(text for text in (opener, _write(body, register, rng), signoff) if text)
    if rng.random() < register.get("upper", 0):
        ticket = ticket.upper()
    replies = banks["cells"][category][urgency]["replies"]
    reply = _reply(replies[rule] if urgency == "high" else replies, statement, rng).format(**values)
    record = {
        "id": f"{banks.get('id_prefix', 't')}{index:05d}",
        "ticket": ticket,
        "category": category,
        "urgency": urgency,
        "reply": reply,
    }
    decisive = (cue or statement).format(**values)
    return record, {
        "rule": rule,
        "hard_negative": hard_negative,
        "decisive": decisive,
        "register": name,
        "parts": parts,
    }


def replies_by_label() -> dict[tuple[str, str], list[str]]:
    """``(category, urgency)`` -> the bank's replies without slots, in the bank's order."""
    replies: dict[tuple[str, str], list[str]] = {}
    for category, cells in ticket_banks()["cells"].items():
        for urgency, cell in cells.items():
            bank = cell["replies"]
            texts = [text for texts in bank.values() for text in texts] if isinstance(bank, dict) else bank
            replies[category, urgency] = [text for text in texts if "{" not in text]
    return replies


def make_ticket(rng: random.Random, index: int, period: str = "default") -> dict:
    return compose_ticket(rng, index, period)[0]


def _distinct(make, n: int, rng: random.Random, *text_of, max_similarity: float = 0.6) -> list[dict]:
    """``n`` records from ``make(rng, index)`` such that no two texts (by each of the ``text_of`` functions)
    share a normalized form or exceed ``max_similarity`` (5-gram Jaccard): every duplicate in a raw file is
    then one injected on purpose."""
    from datasketch import MinHashLSH

    from ftlib.data.curate import dedup_key, jaccard, minhash

    indexes = [MinHashLSH(threshold=max_similarity * 0.8, num_perm=128) for _ in text_of]
    records, keys, attempts = [], [set() for _ in text_of], 0
    while len(records) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could only make {len(records)} distinct records of {n}")
        record = make(rng, len(records))
        texts = [text(record) for text in text_of]
        if any(dedup_key(text) in seen for text, seen in zip(texts, keys, strict=True)):
            continue
        signatures = [minhash(text) for text in texts]
        if any(
            jaccard(text, text_of_one(records[i])) >= max_similarity
            for text, text_of_one, lsh, signature in zip(texts, text_of, indexes, signatures, strict=True)
            for i in lsh.query(signature)
        ):
            continue
        for text, seen, lsh, signature in zip(texts, keys, indexes, signatures, strict=True):
            lsh.insert(len(records), signature)
            seen.add(dedup_key(text))
        records.append(record)
    return records


def generate_clean_tickets(n: int, rng: random.Random, period: str = "default") -> list[dict]:
    """``n`` distinct tickets without flaws, of one of ``PERIODS``."""
    if period == "default":  # the very calls that wrote the committed sample
        return _distinct(make_ticket, n, rng, lambda r: r["ticket"])
    return _distinct(lambda rng, index: make_ticket(rng, index, period), n, rng, lambda r: r["ticket"])


def generate_support_tickets(n: int = 3000, seed: int = 1234, period: str = "default") -> list[dict]:
    """``n`` clean, distinct support tickets (no injected flaws); deterministic for a given seed and period."""
    return generate_clean_tickets(n, random.Random(seed), period)


def write_later_tickets(folder: str | Path = "data/samples", n: int = LATER_TICKETS, seed: int = 1234) -> list[Path]:
    """The later period's batch (``support_tickets_later.jsonl``, clean and labelled) and its manifest.

    Clean on purpose: the drift lesson is about the new text and mix, not about curation, which 02 teaches.
    """
    folder = Path(folder)
    records = generate_support_tickets(n, seed, period="later")
    manifest = {"task": "support_tickets", "period": "later", "records": len(records), "flaws": {}, "seed": seed}
    return [
        write_jsonl(records, folder / "support_tickets_later.jsonl"),
        write_json(manifest, folder / "support_tickets_later.manifest.json"),
    ]


def write_samples(folder: str | Path = "data/samples", seed: int = 1234) -> list[Path]:
    """(Re)generate the committed raw sample files and their flaw manifests."""
    from ftlib.core.tasks import SUPPORT_TICKETS
    from ftlib.data.flaws import inject_chat_flaws, inject_listing_flaws, inject_ticket_flaws

    folder = Path(folder)
    rng = random.Random(seed)
    raw, manifest = inject_ticket_flaws(generate_clean_tickets(2790, rng), SUPPORT_TICKETS, rng, replies_by_label())
    listings, listings_manifest = inject_listing_flaws(generate_listings(1425, seed), random.Random(seed))
    chats, chats_manifest = inject_chat_flaws(generate_shop_chats(1440, seed), random.Random(seed), PRODUCTS)
    paths = []
    for name, records, truth in (
        ("support_tickets", raw, manifest),
        ("listings", listings, listings_manifest),
        ("shop_chats", chats, chats_manifest),
    ):
        truth["seed"] = seed
        paths.append(write_jsonl(records, folder / f"{name}.jsonl"))
        paths.append(write_json(truth, folder / f"{name}.manifest.json"))
    return paths + write_later_tickets(folder, seed=seed)


# ---------------------------------------------------------------- listings: data-to-text

PROPERTY_TYPES = ("apartment", "house", "studio", "townhouse", "cottage", "loft")
CITIES = (
    "Leeds",
    "Bristol",
    "Manchester",
    "Glasgow",
    "Cardiff",
    "Brighton",
    "York",
    "Norwich",
    "Bath",
    "Belfast",
    "Oxford",
    "Sheffield",
    "Liverpool",
    "Edinburgh",
    "Nottingham",
)
FEATURES = (
    "balcony",
    "garden",
    "parking",
    "lift",
    "fireplace",
    "dishwasher",
    "home office",
    "sea view",
    "bike storage",
    "gym",
    "roof terrace",
    "underfloor heating",
    "walk-in wardrobe",
    "concierge",
)
OPENINGS = (
    "{A} {type} in {city}",
    "This {type} in {city}",
    "Located in {city}, this {type}",
    "{A} bright {type} in {city}",
    "In the heart of {city}, this {type}",
    "{A} well-kept {type} in {city}",
)
ROOMS = (
    "offers {bedrooms} and {bathrooms} across {size} square metres.",
    "has {bedrooms}, {bathrooms} and {size} square metres of space.",
    "comes with {bedrooms} and {bathrooms} in {size} square metres.",
)
FEATURE_SENTENCES = (
    "Highlights include {features}.",
    "It features {features}.",
    "You also get {features}.",
    "Extras: {features}.",
)
TERMS = (
    "Rent is £{price} per month, {furnished}, and {pets}.",
    "Available for £{price} a month; {furnished}; {pets}.",
    "The rent is £{price} per month. It is {furnished} and {pets}.",
)


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
    return _distinct(make_listing, n, random.Random(seed), lambda r: r["description"], max_similarity=0.65)


# ---------------------------------------------------------------- shop chats: multi-turn support

# Northwind's policy, which every agent reply follows:
# * orders ship within 1 working day; standard delivery takes 3-5 working days;
# * returns: within 30 days of delivery, free return label; refunds reach the original payment
#   method 5-7 working days after we receive the item;
# * damaged, faulty, wrong or incomplete items: replaced free (or refunded in full), no need to send a
#   damaged item back; electricals carry a 2-year warranty;
# * a second charge is usually a pending authorisation that drops off within 3-5 working days;
# * a delivery address can be changed until the order ships; after that, through the courier's link.
CHAT_TOPICS = ("order_status", "returns", "damaged_item", "payment", "delivery_address", "product_question")


@dataclass(frozen=True)
class Product:
    name: str
    short: str  # how a customer calls it
    price: float
    damages: tuple[str, ...]
    parts: tuple[str, ...]
    facts: tuple[tuple[tuple[str, ...], str], ...]  # (customer questions, the agent's answer)
    sizes: tuple[str, ...] = ()
    electrical: bool = False
    colours: tuple[str, ...] = ("black", "white")

    def all_facts(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """Its own facts and the shop-wide ones (warranty, delivery, returns, colours), worded for it."""
        warranty = (
            "The {item} {comes} with a 2-year warranty, and we replace {it_obj} free if a fault appears in that time."
            if self.electrical
            else "The {item} {is} guaranteed for 1 year against defects, and we replace {it_obj} free if anything goes"
            " wrong."
        )
        delivery = (
            "Delivery on the {item} is free, as it's over £50, and takes 3-5 working days, or next working day with"
            " express for £4.99."
            if self.price >= 50
            else "Delivery on the {item} is £3.99 (free on orders over £50) and takes 3-5 working days."
        )
        colours = ", ".join(self.colours[:-1]) + " and " + self.colours[-1]
        return self.facts + (
            (("is there a warranty on the {short}?", "what guarantee do i get with the {short}"), warranty),
            (
                (
                    "how much is delivery for the {short}?",
                    "do you charge shipping on the {short}",
                    "how fast can i get the {short}?",
                ),
                delivery,
            ),
            (
                ("can I send the {short} back if I don't like {it_obj}?", "what if the {short} doesn't suit me"),
                "Yes, you can return the {item} within 30 days of delivery with a free label, and we refund you"
                " within 5-7 working days of receiving {it_obj}.",
            ),
            (
                (
                    "what colours does the {short} come in?",
                    "which colours are the {short} available in",
                    "does the {short} come in other colours",
                ),
                f"The {{item}} {{comes}} in {colours}.",
            ),
        )


PRODUCTS: tuple[Product, ...] = (
    Product(
        "Aria wireless headphones",
        "headphones",
        79.99,
        ("with a cracked headband", "with a scratched ear cup"),
        ("charging cable", "carry case"),
        (
            (
                ("how long does the battery last on the {short}?", "whats the battery life like"),
                "The {item} last up to 30 hours per charge, and a 10-minute charge gives about 3 hours of play.",
            ),
            (
                ("do the {short} work with an iphone?", "will they connect to my android phone"),
                "Yes, the {item} connect over Bluetooth to any iPhone or Android phone, and to laptops too.",
            ),
            (
                ("are the {short} noise cancelling?", "do they block out noise on the train"),
                "They do: the {item} have active noise cancelling with a transparency mode you can switch on.",
            ),
        ),
        electrical=True,
        colours=("black", "silver", "sage green"),
    ),
    Product(
        "Terra hiking boots",
        "boots",
        119.00,
        ("with a split sole", "with a torn lace loop"),
        ("spare laces", "insoles"),
        (
            (
                ("are the {short} waterproof?", "can i wear the terra boots in heavy rain"),
                "Yes, the {item} have a waterproof, breathable lining, so your feet stay dry in heavy rain.",
            ),
            (
                ("do the {short} run small?", "what size should i get in the {short}, i'm usually a 9"),
                "The {item} fit true to size, so we'd suggest your usual size; they also come in half sizes.",
            ),
        ),
        sizes=("7", "8", "9", "10", "11", "6.5", "9.5"),
        colours=("brown", "grey", "navy"),
    ),
    Product(
        "Nova blender",
        "blender",
        64.50,
        ("with a cracked jug", "with a chipped lid"),
        ("blade assembly", "lid"),
        (
            (
                ("is the jug of the {short} dishwasher safe?", "can i put the blender jug in the dishwasher"),
                "Yes, the jug, lid and blade of the {item} are all dishwasher safe (top rack for the lid).",
            ),
            (
                ("can the {short} crush ice?", "is the nova strong enough for frozen fruit"),
                "It can: the {item} has a 1000 W motor and an ice-crush setting that handles frozen fruit too.",
            ),
            (
                ("how big is the jug on the {short}?", "how many smoothies can the {short} make at once"),
                "The {item} has a 1.5-litre jug, enough for about four large smoothies at once.",
            ),
        ),
        electrical=True,
        colours=("white", "black", "red"),
    ),
    Product(
        "Luma desk lamp",
        "lamp",
        39.99,
        ("with a bent arm", "with a cracked shade"),
        ("power adapter", "base clamp"),
        (
            (
                ("is the {short} dimmable?", "can you dim the luma lamp"),
                "Yes, the {item} has touch dimming with five brightness levels and three colour temperatures.",
            ),
            (
                ("what bulb does the {short} take?", "do i need to buy bulbs for the lamp"),
                "The {item} has a built-in LED that lasts about 25,000 hours, so you never need to buy bulbs.",
            ),
        ),
        electrical=True,
        colours=("black", "white", "brass"),
    ),
    Product(
        "Harbor linen duvet cover",
        "duvet cover",
        89.00,
        ("with a ripped seam", "with a stain on it"),
        ("pillowcases", "button fastening"),
        (
            (
                ("can i wash the {short} at 60?", "what temperature do i wash the linen cover at"),
                "Please wash the {item} at 40°C; it softens with every wash and can be tumble dried on low.",
            ),
            (
                ("does the {short} come in king size?", "what sizes does the harbor cover come in"),
                "The {item} comes in single, double, king and super king, each with two matching pillowcases.",
            ),
        ),
        sizes=("double", "king", "single", "super king"),
        colours=("white", "oatmeal", "dusty pink", "slate blue"),
    ),
    Product(
        "Birch oak side table",
        "side table",
        149.00,
        ("with a scratched top", "with a split leg"),
        ("fixing screws", "allen key"),
        (
            (
                ("does the {short} need assembling?", "is the side table flat packed"),
                "The {item} arrives flat-packed, but it takes about 15 minutes and the tools are included.",
            ),
            (
                ("what are the dimensions of the {short}?", "how tall is the birch table"),
                "The {item} is 45 cm wide, 45 cm deep and 55 cm tall, a good height next to most sofas.",
            ),
        ),
        colours=("natural oak", "dark walnut"),
    ),
    Product(
        "Fjord rain jacket",
        "jacket",
        95.00,
        ("with a broken zip", "with a tear in the sleeve"),
        ("detachable hood", "spare toggle"),
        (
            (
                ("can the {short} go in the washing machine?", "how do i wash the fjord jacket"),
                "Yes, the {item} can be machine washed at 30°C; skip the fabric softener to keep it waterproof.",
            ),
            (
                ("does the {short} have a hood?", "is the hood on the fjord jacket removable"),
                "The {item} has a hood that zips off, plus two zipped pockets and taped seams.",
            ),
        ),
        sizes=("S", "M", "L", "XL"),
        colours=("yellow", "navy", "olive"),
    ),
    Product(
        "Orbit smart watch",
        "watch",
        129.00,
        ("with a cracked screen", "with a scratched face"),
        ("charging dock", "spare strap"),
        (
            (
                ("can i swim with the {short}?", "is the orbit watch waterproof"),
                "Yes, the {item} is water resistant to 50 metres, so it's fine for swimming and showers.",
            ),
            (
                ("does the {short} work with iphone?", "will the orbit pair with my samsung phone"),
                "The {item} works with both iPhone and Android through the free Orbit app.",
            ),
            (
                ("how long does the battery last on the {short}?", "how often do i have to charge the orbit"),
                "The {item} lasts about 7 days per charge, or 2 days with GPS on all the time.",
            ),
        ),
        electrical=True,
        colours=("black", "rose gold", "silver"),
    ),
    Product(
        "Cedar cast-iron pan",
        "pan",
        45.00,
        ("with a chipped handle", "with a crack in the base"),
        ("helper handle", "lid"),
        (
            (
                ("does the {short} work on induction?", "can i use the cedar pan on an induction hob"),
                "Yes, the {item} works on every hob, induction included, and in the oven up to 260°C.",
            ),
            (
                ("is the {short} pre-seasoned?", "do i have to season the cast iron pan first"),
                "The {item} comes pre-seasoned, so you can cook with it straight away; just dry it well after washing.",
            ),
        ),
        colours=("black", "blue enamel"),
    ),
    Product(
        "Pico coffee grinder",
        "grinder",
        54.99,
        ("with a cracked hopper", "with a dented lid"),
        ("cleaning brush", "hopper lid"),
        (
            (
                ("can the {short} grind for espresso?", "is the pico fine enough for espresso"),
                "Yes, the {item} has 18 grind settings, from fine espresso to coarse for a cafetière.",
            ),
            (
                ("how loud is the {short}?", "is the coffee grinder noisy"),
                "The {item} is one of our quieter grinders, about as loud as a kettle, and grinds a cup in 10 seconds.",
            ),
        ),
        electrical=True,
        colours=("matte black", "white", "copper"),
    ),
)
COURIERS = ("DPD", "Evri", "Royal Mail", "DHL", "Yodel")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = ("March", "April", "May", "June", "September", "October", "November")
PLACES = (
    "in the porch",
    "with your neighbour at number {n}",
    "behind the side gate",
    "in the garden shed",
    "at the reception desk",
    "in the recycling box by the door",
)
POSTCODE_AREAS = ("LS6", "BS3", "M14", "G12", "CF24", "BN2", "YO10", "NR2", "BA1", "OX4", "S11", "L17", "EH9")


@dataclass(frozen=True)
class ChatScenario:
    topic: str
    problems: tuple[str, ...]  # the customer's first statement of the problem, without the order number
    finals: tuple[str, ...]  # the agent's resolving reply
    followups: tuple[tuple[tuple[str, ...], str], ...] = ()  # a further question and its answer
    needs_order: bool = True
    needs: str = ""  # "sizes", "electrical": which products fit


CHAT_SCENARIOS: tuple[ChatScenario, ...] = (
    ChatScenario(
        "order_status",
        (
            "where is my order?",
            "my order hasn't arrived yet",
            "I ordered the {item} on {odate} and it still hasn't come",
            "can you tell me when my {short} will arrive?",
            "any update on my order? it's been {days} days",
            "I'm waiting for the {short} I bought last week, when will it be delivered?",
            "just checking on the delivery of my {short}, no email since I ordered",
        ),
        (
            "Thanks for waiting! Order {order} ({item}) left us on {sdate} with {courier} and should arrive by {eta}.",
            "Good news: your {item} from order {order} {is} with {courier} and due to arrive by {eta}; the tracking"
            " link is in your dispatch email.",
            "I've checked order {order}: the {item} shipped on {sdate} with {courier} and {is} due by {eta}.",
        ),
        (
            (
                ("can it come any faster?", "is there any way to get it sooner", "can i upgrade to express?"),
                "Once an order has left us we can't change the service, but {courier} will deliver order {order}"
                " by {eta}, and you'll get a one-hour delivery window by text that morning.",
            ),
            (
                ("what if I'm not home?", "i'm at work all day, what happens then", "will they leave it outside?"),
                "If you're out, {courier} will leave your {short} in a safe place or with a neighbour, or you can"
                " pick another day from the link in their text.",
            ),
        ),
    ),
    ChatScenario(
        "order_status",
        (
            "the tracking for my order hasn't moved in {days} days",
            "tracking on my {short} has been stuck on 'in transit' since {sdate}",
            "the courier page hasn't updated for ages, {is} my {short} lost?",
        ),
        (
            "Sorry about that: the tracking for order {order} stopped at the {courier} depot, which usually means a"
            " short delay. If your {item} {hasnt} arrived by {eta}, I'll send a replacement free by express.",
            "I'm sorry for the worry. Order {order} is delayed at the {courier} depot rather than lost; if the"
            " {item} {isnt} with you by {eta}, just reply here and we'll send another one free.",
        ),
    ),
    ChatScenario(
        "order_status",
        (
            "tracking says my order was delivered but I never got it",
            "it says delivered yesterday but there's no parcel anywhere",
            "the {short} {shows} as delivered but {it_s} not here, I've checked with the neighbours",
        ),
        (
            "I'm sorry your {item} {hasnt} turned up. {courier} marked order {order} as delivered on {sdate}, so"
            " please check any safe place; if {it} {isnt} found within 48 hours, I'll send a replacement or a full"
            " refund.",
            "Sorry about this! I've opened a missing-parcel claim with {courier} for order {order}, and if your"
            " {item} {isnt} found within 48 hours we'll send a replacement or refund you in full.",
        ),
    ),
    ChatScenario(
        "order_status",
        (
            "my order still says processing and I ordered on {odate}",
            "why hasn't my {short} been sent yet?",
            "I paid {days} days ago and the order hasn't even shipped",
        ),
        (
            "Sorry for the wait! Order {order} is being packed now and will ship tomorrow with {courier}, so your"
            " {item} should arrive by {eta}.",
            "Apologies for the delay: the {item} in order {order} was back-ordered, but it ships tomorrow and"
            " should be with you by {eta}.",
        ),
    ),
    ChatScenario(
        "returns",
        (
            "I'd like to return the {item}, {reason}",
            "how do I send back the {short}? {reason}",
            "can I return my {short}? {reason}",
            "I want a refund for the {short}, {reason}",
            "{reason}, so I'd like to send the {short} back",
        ),
        (
            "No problem: the {item} from order {order} {is} within our 30-day return window, so I've emailed you a"
            " free return label. Your refund of £{price} will reach your original payment method within 5-7"
            " working days of us receiving it.",
            "Of course! I've emailed a free return label for the {item} (order {order}); once it's back with us,"
            " the £{price} refund takes 5-7 working days to reach you.",
            "That's fine, you have 30 days to return it: a free return label for order {order} is in your inbox,"
            " and we'll refund the £{price} for the {item} within 5-7 working days of receiving it.",
        ),
        (
            (
                (
                    "do I need the original box?",
                    "does it have to be in the packaging",
                    "can i return it without the box",
                ),
                "The original box is nice but not required: any sturdy packaging is fine for the {item}, as long as"
                " the return label from order {order} is on the outside.",
            ),
            (
                ("when will I get my money back?", "how long does the refund take", "when do i get the refund"),
                "We refund the £{price} for the {item} within 5-7 working days of receiving it, to the card you"
                " paid with for order {order}.",
            ),
        ),
    ),
    ChatScenario(
        "returns",
        (
            "can I swap the {short} for a size {size}? {reason}",
            "I need to exchange the {item} for size {size}",
            "the {short} I got is the wrong size for me, could I get a {size} instead?",
        ),
        (
            "Happy to help: I've set up an exchange of the {item} for size {size} on order {order} and emailed a"
            " free return label; the new one ships as soon as you drop the old one off.",
            "Of course! The {item} in size {size} {is} reserved for you, and I've emailed a free return label for"
            " order {order}, so the swap ships as soon as the return is scanned.",
        ),
        needs="sizes",
    ),
    ChatScenario(
        "returns",
        (
            "I'd like to return the {item}, I bought it {old} days ago",
            "can I still send back my {short}? it arrived about {old} days ago",
            "is it too late to return the {short}? got it {old} days ago",
        ),
        (
            "I'm sorry, but order {order} was delivered {old} days ago, which is past our 30-day return window, so"
            " we can't take the {item} back for a refund.",
            "Unfortunately the {item} from order {order} arrived {old} days ago, and returns are only accepted"
            " within 30 days of delivery, so I can't offer a refund this time.",
        ),
    ),
    ChatScenario(
        "returns",
        (
            "I sent back the {short} {days} days ago, where's my refund?",
            "still no refund for the {item} I returned",
            "you got my return of the {short} but I haven't been refunded",
        ),
        (
            "Thanks for your patience: we received the {item} from order {order} on {sdate} and issued your £{price}"
            " refund the same day; it can take 5-7 working days to show on your statement.",
            "Your return for order {order} arrived on {sdate}, and the £{price} refund for the {item} has been issued;"
            " please allow 5-7 working days for your bank to show it.",
        ),
    ),
    ChatScenario(
        "damaged_item",
        (
            "the {short} arrived {damage}",
            "my {item} came {damage}, really disappointed",
            "I opened the box and the {short} {is} {damage2}",
            "the {short} I ordered turned up {damage}. not happy",
        ),
        (
            "I'm so sorry the {item} arrived {damage}. I've sent a free replacement for order {order}, due by {eta},"
            " and there's no need to send the damaged one back.",
            "Sorry about that! A replacement {item} for order {order} is being sent free of charge and should"
            " arrive by {eta}; please keep or recycle the damaged one.",
            "That's not the condition it should arrive in, sorry! I've arranged a free replacement {item} for order"
            " {order}, arriving by {eta}, and you don't need to return the damaged one.",
        ),
        (
            (
                (
                    "can I have a refund instead?",
                    "actually i'd rather have my money back",
                    "could you refund me instead",
                ),
                "Of course: I've cancelled the replacement and refunded the £{price} for the {item} (order {order}),"
                " which will reach your card within 5-7 working days.",
            ),
            (
                ("do you need photos?", "should i send you a picture of it", "do i need to send it back?"),
                "There's no need: your replacement {item} for order {order} has already shipped, and you can keep"
                " or recycle the damaged one.",
            ),
        ),
    ),
    ChatScenario(
        "damaged_item",
        (
            "I ordered the {item} but got a {wrong} instead",
            "wrong item in my parcel, there's a {wrong} in it, not my {short}",
            "you sent me a {wrong}, I ordered the {short}",
        ),
        (
            "Sorry for the mix-up! I've sent the {item} for order {order} by express today and emailed a free"
            " return label for the {wrong}.",
            "Apologies for that: the correct {item} for order {order} goes out by express today, and a free return"
            " label for the {wrong} is in your inbox.",
        ),
    ),
    ChatScenario(
        "damaged_item",
        (
            "the {short} arrived without the {part}",
            "there's no {part} in the box with my {short}",
            "my {item} came with the {part} missing",
        ),
        (
            "Sorry about that: I've sent the missing {part} for your {item} (order {order}) free of charge, and it"
            " should arrive by {eta}.",
            "Apologies! A {part} for the {item} from order {order} ships to you free today, due by {eta}.",
        ),
    ),
    ChatScenario(
        "damaged_item",
        (
            "my {short} stopped working after {weeks} weeks",
            "the {item} won't turn on anymore, I've only had it {weeks} weeks",
            "the {short} broke after {weeks} weeks of normal use",
        ),
        (
            "I'm sorry the {item} {has} stopped working. It's covered by our 2-year warranty, so I've emailed a free"
            " return label for order {order} and we'll send a replacement as soon as it's back with us.",
            "Sorry to hear that! Your {item} {is} under our 2-year warranty: use the free return label I've emailed"
            " for order {order}, and a replacement ships the day we receive it.",
        ),
        needs="electrical",
    ),
    ChatScenario(
        "payment",
        (
            "I've been charged twice for my order, £{price} both times",
            "there are two payments of £{price} on my card for the {short}",
            "why did you take £{price} twice?",
            "my bank shows a double charge for the {item}",
        ),
        (
            "Sorry for the worry: the second £{price} is a pending authorisation for order {order}, not a charge,"
            " and it will drop off your card within 3-5 working days.",
            "I've checked order {order} and we only took £{price} once; the other one is a temporary hold that your"
            " bank releases within 3-5 working days.",
        ),
        (
            (
                ("and if it's still there next week?", "what if it doesn't go away", "are you sure it'll go"),
                "If the extra £{price} is still on your card after 5 working days, reply here with a screenshot and"
                " I'll refund it straight away from order {order}.",
            ),
        ),
    ),
    ChatScenario(
        "payment",
        (
            "my card keeps getting declined at checkout when I try to buy the {short}",
            "the payment for the {item} won't go through",
            "checkout says payment failed every time I try to order the {item}",
            "I'm trying to pay for a {short} but my card is declined",
        ),
        (
            "Sorry about that! A decline usually means the billing address doesn't match your card, so please check"
            " it, or pay with PayPal or a Northwind gift card; your {item} {is} saved in your basket.",
            "I'm sorry the payment failed: you haven't been charged, and your basket with the {item} is saved. Please"
            " check the billing address matches your card, or try PayPal instead.",
        ),
        needs_order=False,
    ),
    ChatScenario(
        "payment",
        (
            "my discount code {code} didn't work on my order",
            "I forgot to use the code {code}, can you still apply it?",
            "the {code} code wasn't taken off the {short}",
        ),
        (
            "Sorry about that! I've applied {code} to order {order} and refunded the 10% discount, £{disc}, which"
            " will reach your card within 5-7 working days.",
            "No problem: code {code} is valid for order {order}, so I've refunded the £{disc} difference on the"
            " {item}; it takes 5-7 working days to show.",
        ),
    ),
    ChatScenario(
        "payment",
        (
            "can I get a VAT invoice for my order?",
            "I need a receipt for the {short} for my work expenses",
            "where do I find the invoice for the {item}?",
        ),
        (
            "Of course: I've emailed the VAT invoice for order {order} to the address on your account, and you can"
            " also download it under My Orders.",
            "I've just sent the invoice for order {order} ({item}, £{price}) to your email; it's also in My Orders"
            " whenever you need it again.",
        ),
    ),
    ChatScenario(
        "payment",
        (
            "I cancelled my order but I was still charged £{price}",
            "you took £{price} for the {short} even though I cancelled",
        ),
        (
            "Sorry for the confusion: order {order} was cancelled before it shipped, so the £{price} refund has been"
            " issued and will reach your card within 5-7 working days.",
            "I can see order {order} was cancelled, and I've refunded the £{price} for the {item}; it takes 5-7"
            " working days to appear on your card.",
        ),
    ),
    ChatScenario(
        "delivery_address",
        (
            "I need to change the delivery address for my order",
            "can you send the {short} to my work address instead? it's saved in my account",
            "I've moved, please update the address on my order to the new one in my account",
            "I put my old address on the order by mistake",
        ),
        (
            "Done: order {order} hasn't shipped yet, so I've changed the delivery address to the new one on your"
            " account, and your {item} should still arrive by {eta}.",
            "No problem! I've updated the address on order {order} before it ships, so the {item} will go to your"
            " new address and should arrive by {eta}.",
        ),
        (
            (
                ("will that delay it?", "does that change the delivery date", "will it still come on time"),
                "It won't: order {order} ships on time to the new address, and your {item} should still arrive by"
                " {eta}.",
            ),
        ),
    ),
    ChatScenario(
        "delivery_address",
        (
            "my order has shipped but I gave the wrong address",
            "the {short} was sent yesterday to my old address, can you change it?",
            "just saw I used the wrong address and it's already with the courier",
        ),
        (
            "As order {order} has already left us with {courier}, I can't change the address here, but you can"
            " redirect it with the link in their text; if that isn't possible, it'll come back to us and I'll"
            " reship it free.",
            "Order {order} is already with {courier}, so please use the redirect link in their tracking text;"
            " if the {item} comes back to us instead, we'll send it out again free of charge.",
        ),
    ),
    ChatScenario(
        "delivery_address",
        (
            "I typed the postcode wrong, it should be {good} not {bad}",
            "the postcode on my order is wrong, it's {good}",
            "can you fix my postcode? I put {bad} instead of {good}",
        ),
        (
            "Thanks for spotting that: I've corrected the postcode on order {order} to {good}, and it will ship as"
            " normal.",
            "All fixed! Order {order} now has the postcode {good}, and your {item} should arrive by {eta}.",
        ),
    ),
    ChatScenario(
        "delivery_address",
        (
            "can the courier leave my parcel {place}?",
            "I won't be in, can it be left {place}",
            "please ask the driver to leave the {short} {place}",
        ),
        (
            "Of course: I've added a note to order {order} asking {courier} to leave it {place}.",
            "Done! The delivery note on order {order} now asks {courier} to leave your {item} {place}.",
        ),
    ),
)
RETURN_REASONS = (
    "it's too small",
    "it doesn't fit",
    "the colour isn't what I expected",
    "I changed my mind",
    "it was a gift and they already have one",
    "it's not what I thought it would be",
    "I ordered two by mistake",
)
WRONG_ITEMS = ("phone case", "set of mugs", "yoga mat", "kids' raincoat", "candle", "bath towel", "door mat")
DISCOUNT_CODES = ("WELCOME10", "SPRING10", "NORTH10", "SAVE10", "HELLO10")
SLANG = {"you": "u", "please": "pls", "right now": "rn", "because": "bc", "thanks": "thx", "are": "r"}
CHAT_OPENERS = ("", "", "", "Hi,", "Hello,", "hey", "hi there", "Good morning,", "Hello Northwind,", "Hiya,")
CHAT_ASKS = ("", "", "", "Can you help?", "what can I do?", "please help", "Thanks.", "any ideas?", "thx")
ORDER_MENTIONS = (
    "Order {co}.",
    "order number {co}",
    "(order {co})",
    "My order is {co}.",
    "it's order {co}",
    "Order no. {co}",
)
ASK_ORDER = (
    "Sorry to hear that! Could you give me your order number so I can check?",
    "I can look into that for you. What's your order number?",
    "Thanks for getting in touch. Which order is this about? The number starts with #.",
    "I'd be happy to help. Could you share the order number, please?",
    "Of course. Can I have your order number so I can find it?",
)
GIVE_ORDER = (
    "sure, it's {co}",
    "the order number is {co}",
    "yes it's {co}, thanks",
    "it's {co}, I ordered it on {odate}",
    "{co} I think, placed on {odate}",
    "ok here it is: {co}",
    "order {co}, thank you",
)
ORDER_FIRST = (
    "Hi, I have a question about order {co}",
    "hello, it's about my order {co}",
    "I need help with order {co} please",
    "hi there, order {co} here",
    "hey, quick one about order {co}",
)
WHAT_ABOUT = (
    "Of course! What can I help you with on order {order}?",
    "Thanks, I've found order {order}. What's the problem?",
    "Happy to help with order {order}. What seems to be wrong?",
    "I have order {order} open. How can I help?",
)
PRODUCT_INTROS = (
    "I'm looking at the {item} and have a question",
    "hi, quick question about the {item}",
    "thinking of buying the {short}, can you help me decide?",
)
WHAT_PRODUCT = (
    "Happy to help! What would you like to know about the {item}?",
    "Of course, ask away: what would you like to know about the {item}?",
    "Sure! What's your question about the {item}?",
)
WHICH_PRODUCT = (
    "Happy to help! Which product are you asking about?",
    "Sure, which item do you mean?",
    "Could you tell me which product that is, please?",
)
VAGUE_PRODUCT = (
    "hi, I have a question about one of your products",
    "can I ask something about an item before I buy it?",
    "I need some info on a product please",
)
NAME_PRODUCT = ("it's the {item}:", "the {item} -", "the {item}.", "I mean the {item},")
SINGULAR = {
    "comes": "comes",
    "it_obj": "it",
    "has": "has",
    "hasnt": "hasn't",
    "is": "is",
    "isnt": "isn't",
    "shows": "shows",
    "it": "it",
    "it_s": "it's",
}
PLURAL = {
    "comes": "come",
    "it_obj": "them",
    "has": "have",
    "hasnt": "haven't",
    "is": "are",
    "isnt": "aren't",
    "shows": "show",
    "it": "they",
    "it_s": "they're",
}
ORDER_MENTIONS_ITEM = (
    "Order {co}, the {item}.",
    "(order {co}, {item})",
    "It's order {co} for the {short}.",
    "My order is {co}, the {short}.",
)
GIVE_ORDER_ITEM = (
    "sure, it's {co}, the {item}",
    "it's {co}, for the {short}",
    "order {co}, the {item} I ordered on {odate}",
    "yes it's {co}. it's for the {short}",
)
ORDER_FIRST_ITEM = (
    "Hi, I have a question about order {co}, the {item}",
    "hello, it's about my {short}, order {co}",
    "I need help with order {co} for the {item} please",
)
# The rendered chat (with the spec's instruction as system prompt) stays under ~220 tokens: a token is
# about 4 characters, but every digit is a token of its own and every turn costs ~5 for the template.
CHAT_BUDGET = 675


def _chat_cost(messages: list[dict]) -> int:
    return sum(len(m["content"]) + 3 * sum(c.isdigit() for c in m["content"]) + 20 for m in messages)


def _chat_context(rng: random.Random, product: Product) -> dict:
    number = rng.randint(10_000, 99_999)
    days = rng.randint(3, 9)
    start = rng.randint(1, 20)
    month = rng.choice(MONTHS)
    area = rng.choice(POSTCODE_AREAS)
    good = f"{area} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
    bad = good[:-2] + good[-1] + good[-2] if good[-1] != good[-2] else good[:-1] + "A"
    damage = rng.choice(product.damages)
    return {
        "order": f"#{number}",
        "co": rng.choice((f"#{number}", f"#{number}", str(number))),
        "item": product.name,
        "short": product.short,
        "price": f"{product.price:.2f}",
        "disc": f"{product.price / 10:.2f}",
        "odate": f"{start} {month}" if rng.random() < 0.5 else rng.choice(WEEKDAYS),
        "sdate": f"{start + rng.randint(1, 2)} {month}",
        "eta": f"{rng.choice(WEEKDAYS)} {start + rng.randint(3, 7)} {month}",
        "courier": rng.choice(COURIERS),
        "days": days,
        "old": rng.randint(35, 70),
        "weeks": rng.randint(3, 20),
        "damage": damage,
        "damage2": damage.removeprefix("with "),
        "part": rng.choice(product.parts),
        "wrong": rng.choice(WRONG_ITEMS),
        "code": rng.choice(DISCOUNT_CODES),
        "reason": rng.choice(RETURN_REASONS),
        "size": rng.choice(product.sizes) if product.sizes else "",
        "good": good,
        "bad": bad,
        "place": rng.choice(PLACES).format(n=rng.randint(2, 60)),
        **(PLURAL if product.short.endswith("s") else SINGULAR),
    }


def _customer(text: str, rng: random.Random, ctx: dict, opener: bool = True, ask: bool = True) -> str:
    """One customer turn: an optional greeting and ask around ``text``, then casing, slang and typos."""
    text = text.format(**ctx)
    text = text[0].upper() + text[1:] if rng.random() < 0.6 else text
    if text[-1] not in ".?!)" and rng.random() < 0.6:
        text += "."
    parts = [rng.choice(CHAT_OPENERS) if opener else "", text, rng.choice(CHAT_ASKS) if ask else ""]
    text = " ".join(part for part in parts if part)
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.2:
        for formal, slang in SLANG.items():
            text = text.replace(f" {formal} ", f" {slang} ")
    if rng.random() < 0.25:  # a typo: two letters swapped in a word (never in a number or code)
        words = text.split(" ")
        candidates = [i for i, word in enumerate(words) if len(word) > 3 and word.isalpha() and word.islower()]
        if candidates:
            index = rng.choice(candidates)
            word = words[index]
            cut = rng.randrange(len(word) - 1)
            words[index] = word[:cut] + word[cut + 1] + word[cut] + word[cut + 2 :]
            text = " ".join(words)
    if rng.random() < 0.15:
        text = re.sub(r"[.,!?]+(?=\s|$)", "", text)  # no punctuation at all
    return text


def _with_order(problem: str, rng: random.Random, mentions: tuple[str, ...]) -> str:
    mention = rng.choice(mentions)
    if rng.random() < 0.4:
        return f"{mention} {problem}"
    return f"{problem} {mention}" if problem[-1] in "?!" else f"{problem}. {mention}"


def _product_chat(rng: random.Random, product: Product, ctx: dict) -> list[tuple[str, str]]:
    first, second = rng.sample(product.all_facts(), 2)
    question, answer = rng.choice(first[0]), first[1]
    flow = rng.choice(("one", "one", "intro", "which", "two"))
    if flow == "one":
        turns = [("user", _customer(question, rng, ctx)), ("assistant", answer)]
    elif flow == "intro":
        turns = [
            ("user", _customer(rng.choice(PRODUCT_INTROS), rng, ctx, ask=False)),
            ("assistant", rng.choice(WHAT_PRODUCT)),
            ("user", _customer(question, rng, ctx, opener=False)),
            ("assistant", answer),
        ]
    elif flow == "which":
        turns = [
            ("user", _customer(rng.choice(VAGUE_PRODUCT), rng, ctx, ask=False)),
            ("assistant", rng.choice(WHICH_PRODUCT)),
            ("user", _customer(rng.choice(NAME_PRODUCT) + " " + question, rng, ctx, opener=False, ask=False)),
            ("assistant", answer),
        ]
    else:
        lead = rng.choice(("and ", "thanks, and ", "great. ", "ok, ", "perfect, also "))
        turns = [
            ("user", _customer(question, rng, ctx)),
            ("assistant", answer),
            ("user", _customer(lead + rng.choice(second[0]), rng, ctx, opener=False, ask=False)),
            ("assistant", second[1]),
        ]
    return turns


def _order_chat(rng: random.Random, scenario: ChatScenario, ctx: dict) -> list[tuple[str, str]]:
    problem = rng.choice(scenario.problems)
    named = "{item}" in problem or "{short}" in problem  # else the customer names the item with the order
    flow = rng.choice(("one", "one", "ask", "ask", "first") if scenario.needs_order else ("one",))
    if flow == "one":
        text = _with_order(problem, rng, ORDER_MENTIONS if named else ORDER_MENTIONS_ITEM)
        turns = [("user", _customer(text if scenario.needs_order else problem, rng, ctx))]
    elif flow == "ask":
        turns = [
            ("user", _customer(problem, rng, ctx)),
            ("assistant", rng.choice(ASK_ORDER)),
            (
                "user",
                _customer(rng.choice(GIVE_ORDER if named else GIVE_ORDER_ITEM), rng, ctx, opener=False, ask=False),
            ),
        ]
    else:
        turns = [
            (
                "user",
                _customer(rng.choice(ORDER_FIRST if named else ORDER_FIRST_ITEM), rng, ctx, opener=False, ask=False),
            ),
            ("assistant", rng.choice(WHAT_ABOUT)),
            ("user", _customer(problem, rng, ctx, opener=False)),
        ]
    turns.append(("assistant", rng.choice(scenario.finals)))
    if scenario.followups and len(turns) < 6 and rng.random() < 0.6:
        questions, answer = rng.choice(scenario.followups)
        turns += [("user", _customer(rng.choice(questions), rng, ctx, opener=False, ask=False)), ("assistant", answer)]
    return turns


def make_chat(rng: random.Random, index: int) -> dict:
    """One clean chat: 1-3 customer turns, alternating with the agent, ending with the agent's reply."""
    from ftlib.data.curate import is_junk

    while True:
        topic = rng.choice(CHAT_TOPICS)
        if topic == "product_question":
            product = rng.choice(PRODUCTS)
            ctx = _chat_context(rng, product)
            turns = _product_chat(rng, product, ctx)
        else:
            scenario = rng.choice([s for s in CHAT_SCENARIOS if s.topic == topic])
            fitting = [p for p in PRODUCTS if not scenario.needs or getattr(p, scenario.needs)]
            product = rng.choice(fitting)
            ctx = _chat_context(rng, product)
            turns = _order_chat(rng, scenario, ctx)
        messages = [
            {"role": role, "content": content if role == "user" else content.format(**ctx)} for role, content in turns
        ]
        customer = [m["content"] for m in messages if m["role"] == "user"]
        if _chat_cost(messages) <= CHAT_BUDGET and not any(map(is_junk, customer)):
            return {"id": f"s{index:05d}", "topic": topic, "messages": messages}


def chat_text(record: dict) -> str:
    """All turns of a chat, one per line (for de-duplication)."""
    return "\n".join(m["content"] for m in record["messages"])


def customer_text(record: dict) -> str:
    """The customer's turns of a chat, one per line (what makes two chats duplicates)."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def generate_shop_chats(n: int = 1440, seed: int = 1234) -> list[dict]:
    """``n`` clean, distinct shop chats (no injected flaws); deterministic for a given seed."""
    return _distinct(make_chat, n, random.Random(seed), customer_text, chat_text)
