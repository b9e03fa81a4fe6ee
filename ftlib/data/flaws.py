"""Realistic flaws injected into clean generated data at known rates, with a ground-truth manifest.

The manifest records which record carries which flaw (and, for duplicates, of which record; for
PII, the exact strings inserted), so tests can measure the curation pipeline's precision and recall.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from ftlib.core.tasks import Task

TICKET_FLAW_RATES = {
    "exact_duplicate": 0.03,
    "near_duplicate": 0.03,
    "conflict_duplicate": 0.01,
    "pii": 0.10,
    "junk": 0.01,
    "over_long": 0.01,
    "label_variant": 0.02,
    "label_invalid": 0.01,
    "html": 0.02,
    "layout": 0.03,
    "non_english": 0.01,
}
DUPLICATE_CLASSES = ("exact_duplicate", "near_duplicate", "conflict_duplicate")

FIRST_NAMES = (
    "John",
    "Maria",
    "Priya",
    "Tom",
    "Aisha",
    "Wei",
    "Olga",
    "Carlos",
    "Fatima",
    "James",
    "Sarah",
    "Mohammed",
    "Emma",
    "Lucas",
    "Chloe",
    "Daniel",
    "Ana",
    "Kofi",
    "Hannah",
    "Ravi",
)
LAST_NAMES = (
    "Smith",
    "Garcia",
    "Patel",
    "Baker",
    "Khan",
    "Zhang",
    "Ivanova",
    "Lopez",
    "Hassan",
    "O'Brien",
    "Connor",
    "Ali",
    "Wilson",
    "Martin",
    "Dubois",
    "Nguyen",
    "Silva",
    "Mensah",
    "Schmidt",
    "Sharma",
)
STREETS = ("Baker", "Oak", "Maple", "High", "Station", "Church", "Mill", "Victoria", "Park", "King")
STREET_TYPES = ("Street", "Road", "Avenue", "Lane", "Drive", "Close", "Way", "Court", "St", "Rd")
DOMAINS = ("gmail.com", "yahoo.co.uk", "outlook.com", "example.org", "mail.net", "proton.me")
JUNK_TEXTS = ("asdf", "test", "testing 123", "   ", "", "lorem ipsum", "xxx", "...", "n/a", "qwerty")
NON_ENGLISH = (
    (
        "Hola, mi internet no funciona desde ayer y necesito ayuda por favor, es muy urgente para mi trabajo.",
        "outage",
        "high",
    ),
    ("Buenas, me han cobrado dos veces la factura de este mes, por favor devuelvan el dinero.", "billing", "medium"),
    ("Bonjour, je ne peux pas me connecter à mon compte depuis une semaine, pouvez-vous m'aider?", "account", "medium"),
    (
        "Bonjour, la connexion est très lente le soir et je paie pour la fibre, ce n'est pas normal.",
        "slow_speed",
        "medium",
    ),
    (
        "Hallo, mein Router ist kaputt und die Lampe blinkt rot, bitte schicken Sie mir einen neuen.",
        "hardware",
        "medium",
    ),
    (
        "Guten Tag, ich möchte meinen Vertrag kündigen, weil ich umziehe. Bitte bestätigen Sie die Kündigung.",
        "cancellation",
        "medium",
    ),
    ("Hola, quiero saber cuándo termina mi contrato y si hay una penalización por cancelar.", "cancellation", "low"),
    ("Salut, le décodeur TV redémarre tout seul plusieurs fois par jour, que faire?", "hardware", "medium"),
)
CATEGORY_VARIANTS = {
    "billing": ("Billing ", "BILLING", "bill", "payment"),
    "outage": ("Outage", "internet down", " outage"),
    "slow_speed": ("slow speed", "Slow-Speed", "speed"),
    "hardware": ("Hardware", "equipment", "device"),
    "account": ("Account ", "login"),
    "cancellation": ("cancel", "Cancellation", "cancelation"),
}
URGENCY_VARIANTS = {
    "high": ("urgent", "HIGH", "critical", "P1"),
    "medium": ("Medium", "normal", "med"),
    "low": ("LOW", "minor", "lo"),
}
INVALID_LABELS = (
    ("category", "refund"),
    ("category", "tv"),
    ("category", "other"),
    ("category", ""),
    ("urgency", "asap"),
    ("urgency", "5"),
    ("urgency", "whenever"),
)
LOG_LINES = (
    "[{t}] WAN link state: DOWN (code 0x{c:04x}), retrying DHCP lease on eth0, attempt {a} of 10",
    "[{t}] DSL sync lost, SNR margin {a}.{c} dB, line attenuation 38.{a} dB, resync scheduled",
    "[{t}] PPPoE session terminated by peer, LCP echo timeout after {a} requests, reconnecting",
)


def luhn_complete(prefix: str) -> str:
    """Append the check digit that makes ``prefix`` Luhn-valid."""
    from ftlib.data.cleaning import luhn_valid

    return next(prefix + check for check in "0123456789" if luhn_valid(prefix + check))


def fake_pii(rng: random.Random) -> tuple[str, str, str]:
    """One piece of PII as ``(type, text, sentence containing it)``."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    kind = rng.choice(("EMAIL", "PHONE", "CARD", "ADDRESS", "NAME"))
    if kind == "EMAIL":
        separator, surname = rng.choice([".", "_", ""]), last.lower().replace(chr(39), "")
        text = f"{first.lower()}{separator}{surname}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
        sentence = rng.choice(("You can email me at {}.", "my email is {}", "Contact: {}", "reply to {} pls"))
    elif kind == "PHONE":
        d = [str(rng.randint(0, 9)) for _ in range(10)]
        text = rng.choice(
            (
                f"({''.join(d[:3])}) {''.join(d[3:6])}-{''.join(d[6:])}",
                f"{''.join(d[:3])}-{''.join(d[3:6])}-{''.join(d[6:])}",
                f"+44 7{''.join(d[:3])} {''.join(d[3:9])}",
                f"07{''.join(d[:3])} {''.join(d[3:9])}",
                f"+1 {''.join(d[:3])} {''.join(d[3:6])} {''.join(d[6:])}",
            )
        )
        sentence = rng.choice(("Call me on {}.", "my number is {}", "Phone: {}", "text me at {} anytime"))
    elif kind == "CARD":
        prefix = rng.choice(("4", "51", "37", "6011"))
        number = luhn_complete(prefix + "".join(str(rng.randint(0, 9)) for _ in range(15 - len(prefix))))
        text = rng.choice(
            (
                " ".join(number[i : i + 4] for i in range(0, 16, 4)),
                number,
                "-".join(number[i : i + 4] for i in range(0, 16, 4)),
            )
        )
        sentence = rng.choice(("The card is {}.", "charged to my card {}", "card number {}", "I paid with {}"))
    elif kind == "ADDRESS":
        text = f"{rng.randint(1, 450)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}"
        if rng.random() < 0.3:
            text += f", Apt {rng.randint(1, 30)}"
        sentence = rng.choice(("I live at {}.", "address: {}", "the service address is {}", "send it to {} please"))
    else:
        text = f"{first} {last}"
        sentence = rng.choice(
            ("My name is {}.", "This is {} from the flat upstairs.", "Regards, {}", "Account holder: {}")
        )
    return kind, text, sentence.format(text)


def near_variant(
    text: str, rng: random.Random, kinds: tuple[str, ...] = ("whitespace", "case", "punctuation", "word")
) -> tuple[str, str]:
    """A near-duplicate of ``text``: changed whitespace, case, punctuation or one word (one of ``kinds``)."""
    kind = rng.choice(kinds)
    if kind == "whitespace":
        return "  " + text.replace(" ", "  ", 2) + " \n", kind
    if kind == "case":
        return (text.upper() if rng.random() < 0.5 else text.lower()), kind
    if kind == "punctuation":
        stripped = re.sub(r"[.,!?]", "", text)
        return (stripped + "!!" if stripped == text else stripped), kind
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    index = rng.choice(candidates) if candidates else len(words) - 1
    replacements = ("really", "still", "now", "again", "today", "also", "just")
    if rng.random() < 0.5:
        words.insert(index, rng.choice(replacements))
    else:
        words[index] = rng.choice(replacements)
    return " ".join(words), kind


def place_copies(
    records: list[dict],
    copies: list[tuple[str, dict]],
    flaws: dict[str, dict],
    rates: Mapping[str, float],
    task_name: str,
    rng: random.Random,
) -> tuple[list[dict], dict]:
    """Insert each ``(source id, copy)`` at a random place after its source; return the records and the manifest."""
    for source_id, copy in copies:  # every copy lands after its source
        position = next(i for i, r in enumerate(records) if r["id"] == source_id)
        records.insert(rng.randint(position + 1, len(records)), copy)
    manifest = {
        "task": task_name,
        "records": len(records),
        "rates": rates,
        "counts": {name: sum(f["class"] == name for f in flaws.values()) for name in rates},
        "flaws": flaws,
    }
    return records, manifest


def inject_ticket_flaws(
    clean: list[dict],
    task: Task,
    rng: random.Random,
    replies: Mapping[tuple[str, str], Sequence[str]],
    rates: dict[str, float] | None = None,
) -> tuple[list[dict], dict]:
    """Return ``(raw_records, manifest)``: ``clean`` with flaws at ``rates`` (share of the final file).

    ``replies`` maps ``(category, urgency)`` to the replies a ticket so labelled may get (the generator's,
    ``ftlib.data.samples.replies_by_label()``): a ticket swapped for a non-English one gets one of those.
    """
    rates = rates or TICKET_FLAW_RATES
    total = round(len(clean) / (1 - sum(rates[c] for c in DUPLICATE_CLASSES)))
    counts = {name: round(rate * total) for name, rate in rates.items()}
    records = [dict(r) for r in clean]
    flaws: dict[str, dict] = {}
    order = list(range(len(records)))
    rng.shuffle(order)
    in_place = [c for c in rates if c not in DUPLICATE_CLASSES]
    cursor = 0
    for name in in_place:
        for index in order[cursor : cursor + counts[name]]:
            flaws[records[index]["id"]] = _flaw_in_place(name, records, index, task, rng, replies)
        cursor += counts[name]
    sources = [records[i] for i in order[cursor:] if len(records[i]["ticket"].split()) >= 10]
    rng.shuffle(sources)
    copies: list[tuple[str, dict]] = []
    for name in DUPLICATE_CLASSES:
        for _ in range(counts[name]):
            source = sources.pop()
            copy, detail = _duplicate(name, source, task, rng)
            copy["id"] = f"{source['id']}-dup{len(copies)}"
            flaws[copy["id"]] = {"class": name, "of": source["id"], **detail}
            copies.append((source["id"], copy))
    return place_copies(records, copies, flaws, rates, task.name, rng)


def _flaw_in_place(
    name: str,
    records: list[dict],
    index: int,
    task: Task,
    rng: random.Random,
    replies: Mapping[tuple[str, str], Sequence[str]],
) -> dict:
    record = records[index]
    detail: dict = {"class": name}
    if name == "pii":
        items = [fake_pii(rng) for _ in range(rng.choice((1, 1, 2)))]
        sentences = [sentence for _, _, sentence in items]
        record["ticket"] = " ".join(
            [record["ticket"], *sentences] if rng.random() < 0.7 else [*sentences, record["ticket"]]
        )
        detail["pii"] = [{"type": kind, "text": text} for kind, text, _ in items]
    elif name == "junk":
        record["ticket"] = rng.choice(JUNK_TEXTS)
    elif name == "over_long":
        lines = [
            rng.choice(LOG_LINES).format(
                t=f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                c=rng.randint(0, 65535),
                a=rng.randint(1, 9),
            )
            for _ in range(14)
        ]
        record["ticket"] += " Here is the full log from the router: " + " ".join(lines)
    elif name == "label_variant":
        field = rng.choice(("category", "urgency"))
        variants = CATEGORY_VARIANTS if field == "category" else URGENCY_VARIANTS
        record[field] = rng.choice(variants[record[field]])
        detail["field"] = field
    elif name == "label_invalid":
        field, value = rng.choice(INVALID_LABELS)
        record[field] = value
        detail["field"] = field
    elif name == "html":
        text = record["ticket"]
        record["ticket"] = rng.choice(
            (
                f"<p>{text}</p>",
                f'<div class="msg">{text}<br/></div>',
                text.replace(" ", "&nbsp;", 2),
                f"{text}<br><br>Sent from my phone",
            )
        )
    elif name == "layout":
        layout = rng.choice(("nested", "renamed"))
        if layout == "nested":
            records[index] = {
                "id": record["id"],
                "text": record["ticket"],
                "labels": {"category": record["category"], "urgency": record["urgency"]},
                "response": record["reply"],
            }
        else:
            records[index] = {
                "id": record["id"],
                "message": record["ticket"],
                "cat": record["category"],
                "priority": record["urgency"],
                "answer": record["reply"],
            }
        detail["layout"] = layout
    elif name == "non_english":
        text, category, urgency = rng.choice(NON_ENGLISH)
        record.update(ticket=text, category=category, urgency=urgency, reply=rng.choice(replies[category, urgency]))
    else:
        raise ValueError(f"unknown flaw {name!r}")
    return detail


def _duplicate(name: str, source: dict, task: Task, rng: random.Random) -> tuple[dict, dict]:
    copy = dict(source)
    detail: dict = {}
    if name in ("near_duplicate", "conflict_duplicate") and (name == "near_duplicate" or rng.random() < 0.5):
        copy["ticket"], detail["variant"] = near_variant(source["ticket"], rng)
    if name == "conflict_duplicate":
        field = rng.choice(("category", "urgency"))
        allowed = [v for v in task.label_values[field] if v != source[field]]
        copy[field] = rng.choice(allowed)
        detail["field"] = field
    return copy, detail


LISTING_FLAW_RATES = {"exact_duplicate": 0.03, "near_duplicate": 0.02, "junk": 0.02, "html": 0.03, "layout": 0.03}


def inject_listing_flaws(
    clean: list[dict], rng: random.Random, rates: dict[str, float] | None = None
) -> tuple[list[dict], dict]:
    """Listings with duplicates (the same property listed twice), empty or placeholder descriptions,
    markup in descriptions and another key layout, plus the ground-truth manifest."""
    rates = rates or LISTING_FLAW_RATES
    total = round(len(clean) / (1 - rates["exact_duplicate"] - rates["near_duplicate"]))
    records = [dict(r) for r in clean]
    order = list(range(len(records)))
    rng.shuffle(order)
    flaws: dict[str, dict] = {}
    cursor = 0
    for name in ("junk", "html", "layout"):
        for index in order[cursor : cursor + round(rates[name] * total)]:
            record = records[index]
            if name == "junk":
                record["description"] = rng.choice(JUNK_TEXTS)
            elif name == "html":
                record["description"] = (
                    f"<p>{record['description']}</p>"
                    if rng.random() < 0.5
                    else record["description"].replace(". ", ".<br/>", 1).replace(" ", "&nbsp;", 1)
                )
            else:
                records[index] = {
                    "id": record["id"],
                    "facts": record["attributes"],
                    "listing_text": record["description"],
                }
            flaws[record["id"]] = {"class": name}
        cursor += round(rates[name] * total)
    sources = [records[i] for i in order[cursor:]]
    copies = []
    for name in ("exact_duplicate", "near_duplicate"):
        for _ in range(round(rates[name] * total)):
            source = sources.pop()
            copy = dict(source, id=f"{source['id']}-dup{len(copies)}")
            if name == "near_duplicate":
                copy["description"], variant = near_variant(source["description"], rng)
                flaws[copy["id"]] = {"class": name, "of": source["id"], "variant": variant}
            else:
                flaws[copy["id"]] = {"class": name, "of": source["id"]}
            copies.append((source["id"], copy))
    return place_copies(records, copies, flaws, rates, "listings", rng)


# ---------------------------------------------------------------- shop chats
