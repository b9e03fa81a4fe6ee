"""Generators for the course's own sample datasets (seeded and deterministic), and ``write_samples``, which writes
all of them: the support tickets here, ``ftlib.data.listings`` and ``ftlib.data.chats`` beside it.

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
from ftlib.data.banks import GENERATORS, distinct, load_bank
from ftlib.data.chats import PRODUCTS, generate_shop_chats
from ftlib.data.listings import generate_listings
from ftlib.data.records import write_jsonl

TICKET_BANKS = GENERATORS / "support_tickets.yaml"
CATEGORY_WEIGHTS = {
    "billing": 1.3,
    "outage": 1.2,
    "slow_speed": 1.0,
    "hardware": 1.0,
    "account": 0.9,
    "cancellation": 0.8,
}
# "later": the banks' ``later`` section applied on top of the default ones; "narrow": the default banks with every
# list of problem phrasings cut to its first NARROW_PHRASINGS (the reference run's narrow-against-varied data)
PERIODS = ("default", "later", "narrow")
# 4 per list leaves 72 ordinary statements over the 18 cells: about the 75 templates the first generator had
NARROW_PHRASINGS = 4
LATER_TICKETS = 600  # the later batch the drift lesson scores: a week or two of a small desk's tickets
HARD_NEGATIVE_RATE = 0.15  # share of low and medium tickets written as a hard negative
ESCALATE_RATE = 0.5  # share of a high cell's escalatable rules written as a medium statement plus the rule's cue


@cache
def ticket_banks() -> dict:
    """The phrase banks of the support-ticket generator (``data/generators/support_tickets.yaml``)."""
    return load_bank("support_tickets")


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
    if period == "narrow":
        return _narrow(banks)
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


def _narrow(banks: dict, keep: int = NARROW_PHRASINGS) -> dict:
    """The default banks with fewer ways to put each problem: every cell's statements, rule statements and hard
    negatives, and every cue list, cut to their first ``keep``. Frames, registers, slots, rewrites and replies stay
    whole, so a narrow ticket differs from a varied one only in how its problem is put, under the same rules."""
    narrow = copy.deepcopy({key: value for key, value in banks.items() if key not in PERIODS})
    for cells in narrow["cells"].values():
        for cell in cells.values():
            if cell.get("statements"):
                cell["statements"] = cell["statements"][:keep]
            for key in ("rules", "hard_negatives"):
                if cell.get(key):
                    cell[key] = {rule: texts[:keep] for rule, texts in cell[key].items()}
    narrow["cue_limit"] = keep  # escalation_cues reads the default banks: _choose_problem cuts its cues here
    return narrow


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
    cues = escalation_cues(category)[rule][: banks.get("cue_limit")]  # every cue, but in the narrow banks
    return category, urgency, statement, rng.choice(cues), rule, False


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


def generate_clean_tickets(n: int, rng: random.Random, period: str = "default") -> list[dict]:
    """``n`` distinct tickets without flaws, of one of ``PERIODS``."""
    if period == "default":  # the very calls that wrote the committed sample
        return distinct(make_ticket, n, rng, lambda r: r["ticket"])
    return distinct(lambda rng, index: make_ticket(rng, index, period), n, rng, lambda r: r["ticket"])


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
    from ftlib.data.chat_flaws import inject_chat_flaws
    from ftlib.data.flaws import inject_listing_flaws, inject_ticket_flaws

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
