"""Generators for the course's own sample datasets (seeded and deterministic).

``support_tickets``: customer messages to an internet and TV provider, each labelled with a
``category``, an ``urgency`` and a short first ``reply``. Urgency follows written rules:

* high: service fully down, security or fraud, money already lost, safety, a business or
  medical dependency, or repeated failures;
* medium: degraded service, or a billing error or request that needs action;
* low: questions, information and small requests.

Every ticket is composed from independent parts (opener, situation, details, cue, ask,
sign-off) with typos, casing and slang, so a model must learn the task and not a template.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ftlib.data import write_jsonl
from ftlib.fileio import write_json


@dataclass(frozen=True)
class Situation:
    category: str
    urgency: str
    statements: tuple[str, ...]
    replies: tuple[str, ...]
    escalates: bool = True  # a repeated-failure or dependency cue raises it to high


SITUATIONS: tuple[Situation, ...] = (
    # billing
    Situation(
        "billing",
        "low",
        (
            "what is the {fee} on my latest bill?",
            "can you explain the line called {fee} on my statement",
            "when is my bill due this month?",
            "how do I switch to paperless billing?",
            "is it possible to move my payment date to the {day}?",
            "i just want to know why my bill went from ${amount} to ${amount2}, is that the new price?",
        ),
        (
            "Happy to help: the {fee} is explained on page 2 of your bill, and I've sent you a breakdown by email.",
            "Thanks for asking! I've sent the details to your email and you can also see them under Billing in the app.",
        ),
        escalates=False,
    ),
    Situation(
        "billing",
        "medium",
        (
            "I was charged twice for {month}, ${amount} both times",
            "my promo discount of ${amount} wasn't applied this month",
            "you billed me for a {addon} package I never ordered",
            "the amount on my bill is ${amount2} but my plan is ${amount}",
            "please refund the late fee, I paid on time",
            "I returned the old modem but I'm still being charged the equipment rental",
        ),
        (
            "Sorry about the billing error: I've opened a billing review and the correction will show on your next statement.",
            "Thanks for flagging this; I've raised a refund request for the difference and will confirm by email within 2 business days.",
        ),
    ),
    Situation(
        "billing",
        "high",
        (
            "there are charges on my card from you that I did NOT authorise, ${amount} each",
            "someone used my account to buy {addon} with my card, this is fraud",
            "you took ${amount} from my bank account three times this week and now I'm overdrawn",
            "autopay pulled ${amount2} instead of ${amount} and my rent payment bounced",
        ),
        (
            "I'm very sorry: I've frozen payments on your account and escalated this to our fraud team, who will call you today.",
            "This is urgent and I've escalated it: the extra payments are flagged for immediate refund and a specialist will contact you within the hour.",
        ),
        escalates=False,
    ),
    # outage
    Situation(
        "outage",
        "high",
        (
            "my internet is completely down {since}",
            "no internet and no TV at all, everything went dead {since}",
            "the connection is totally dead, modem shows no signal",
            "we have had zero service {since}, nothing works",
            "internet's down. like fully down. no lights on the modem except power",
        ),
        (
            "I'm sorry you're without service: I've opened a priority outage ticket and a technician will check your line within 4 hours.",
            "Sorry for the outage; there's a fault in your area that we're fixing now, and I'll text you as soon as service is back.",
        ),
        escalates=False,
    ),
    Situation(
        "outage",
        "medium",
        (
            "the internet keeps dropping every {interval}, then comes back",
            "TV channels freeze and the connection drops a few times a day",
            "wifi disconnects randomly {since}, it comes back after a minute or two",
            "some channels are missing {since} but internet works",
        ),
        (
            "Sorry about the drops: I've run a line test and booked a remote repair, and I'll follow up if a visit is needed.",
            "Thanks for reporting it; I've reset your line from our side and opened a ticket to monitor it for the next 24 hours.",
        ),
    ),
    Situation(
        "outage",
        "low",
        (
            "is there any planned maintenance in my area this week?",
            "will there be an outage for the network upgrade you emailed about?",
            "how do I check if there's an outage before calling you?",
        ),
        (
            "Good question: planned maintenance is listed on our status page, and none is scheduled for your area this week.",
            "You can check outages anytime on our status page or in the app; I've also turned on outage texts for your account.",
        ),
        escalates=False,
    ),
    # slow_speed
    Situation(
        "slow_speed",
        "medium",
        (
            "I'm paying for {plan} Mbps but getting {low} Mbps",
            "internet is super slow in the evenings, videos keep buffering",
            "speed tests show {low} down, my plan is {plan}",
            "everything loads slowly {since}, pages take forever",
            "the upload speed is terrible, {low} Mbps",
        ),
        (
            "Sorry about the slow speeds: I've run a diagnostic on your line and scheduled an optimisation, so please retest tomorrow.",
            "Thanks for the speed results; I've refreshed your connection profile and opened a ticket in case the speed does not recover.",
        ),
    ),
    Situation(
        "slow_speed",
        "low",
        (
            "what speed should I expect on wifi vs cable?",
            "how do I run a proper speed test?",
            "would upgrading to {plan} Mbps help with gaming?",
        ),
        (
            "Great question: wired connections get the full plan speed, and I've emailed you a short guide to testing it.",
            "Happy to help; I've sent a speed test guide and the upgrade options for your address to your email.",
        ),
        escalates=False,
    ),
    # hardware
    Situation(
        "hardware",
        "medium",
        (
            "my router's light is blinking {colour} and wifi is unstable",
            "the TV remote stopped working even with new batteries",
            "the set-top box freezes and restarts by itself",
            "the modem makes a clicking noise and reboots",
            "my wifi extender won't pair with the router anymore",
        ),
        (
            "Sorry about the faulty equipment: I've ordered a replacement that will arrive in 2-3 days with a prepaid return label.",
            "Thanks for the details; please try a factory reset (hold the back button 10 seconds), and if it fails I'll send a replacement.",
        ),
    ),
    Situation(
        "hardware",
        "high",
        (
            "the router is smoking and there's a burning smell",
            "sparks came out of the power adapter of the modem",
            "the set-top box got really hot and the plastic is melting",
        ),
        (
            "Please unplug the device right away and keep away from it; I've arranged an urgent replacement and a safety check today.",
            "For your safety, unplug it now and do not use it; a technician will bring a new unit today and collect the faulty one.",
        ),
        escalates=False,
    ),
    Situation(
        "hardware",
        "low",
        (
            "can I buy a second router for upstairs?",
            "how do I return my old modem?",
            "does your box support {addon}?",
            "which mesh wifi system works with your service?",
        ),
        (
            "Sure: you can order extra equipment in the app, and I've emailed the compatible models and prices.",
            "Happy to help; I've emailed you the details, including prices and a return label if you need one.",
        ),
        escalates=False,
    ),
    # account
    Situation(
        "account",
        "high",
        (
            "someone changed my account password and email, I didn't do it",
            "I think my account was hacked, there are logins from another country",
            "I got a code to reset my password that I never requested and now I'm locked out",
        ),
        (
            "I've locked your account to protect it and our security team will verify your identity and restore access today.",
            "Thanks for telling us quickly: I've signed out all sessions, blocked changes and escalated this to our security team.",
        ),
        escalates=False,
    ),
    Situation(
        "account",
        "medium",
        (
            "I can't log in to my account, it says my details are wrong",
            "the app won't let me update my payment card",
            "I'm moving on the {day} and need to transfer my service to the new address",
            "please add my partner as an authorised user",
        ),
        (
            "Sorry for the trouble: I've reset your login so you can set a new password from the link I just emailed.",
            "Thanks, I've started that request on your account and will confirm by email once it's done, usually within 1 business day.",
        ),
    ),
    Situation(
        "account",
        "low",
        (
            "how do I change the email address on my account?",
            "where can I see my contract details?",
            "can I change my account username?",
            "how do I turn off marketing emails?",
        ),
        (
            "You can change that under Settings > Profile in the app, and I've emailed you step-by-step instructions.",
            "Happy to help: the details are in My Account, and I've sent you a short guide by email.",
        ),
        escalates=False,
    ),
    # cancellation
    Situation(
        "cancellation",
        "medium",
        (
            "I want to cancel my internet service",
            "please cancel my TV package from next month",
            "I'm moving abroad and need to cancel everything",
            "cancel my subscription, I found a cheaper provider",
        ),
        (
            "Sorry to see you go: I've started your cancellation and emailed the final bill date and equipment return details.",
            "I've booked the cancellation for the end of this billing cycle and sent a confirmation with the return label.",
        ),
    ),
    Situation(
        "cancellation",
        "low",
        (
            "what's the fee if I cancel before my contract ends?",
            "when does my contract end?",
            "can I pause my service while I'm away for the summer?",
        ),
        (
            "Good question: your contract details and any early termination fee are in the app, and I've emailed a summary.",
            "Happy to help; I've sent your contract end date and the options for pausing or cancelling to your email.",
        ),
        escalates=False,
    ),
)

OPENERS = ("", "", "Hi,", "Hello,", "hey", "Good morning,", "Hi there,", "To whom it may concern,", "hiya", "Evening,")
SIGNOFFS = ("", "", "Thanks", "thx", "Thanks in advance,", "Regards", "cheers", "Please help.", "ty")
ASKS = (
    "",
    "",
    "Can you help?",
    "what can you do?",
    "pls fix",
    "Please sort this out.",
    "Let me know asap.",
    "Any update would be appreciated.",
    "what are my options?",
)
CONTEXTS = (
    "",
    "",
    "",
    "I've been a customer for {years} years.",
    "I already restarted everything.",
    "I checked the cables twice.",
    "Account number {account}.",
    "I live at the flat above the shop.",
)
REPEAT_CUES = (
    "This is the third time I'm reporting this.",
    "I've called twice already and nothing was done.",
    "same problem AGAIN, it keeps happening every week",
    "nobody fixed it after my last ticket",
)
DEPENDENCY_CUES = (
    "I work from home and have a client call in an hour.",
    "I run a small business from home and can't take orders.",
    "My mum's medical alarm depends on this connection.",
    "I need it for my remote job, I'm losing money.",
)
SLANG = {"you": "u", "please": "pls", "right now": "rn", "because": "bc", "thanks": "thx", "are": "r"}
FILLERS = {
    "fee": ("service fee", "network access fee", "regulatory charge", "equipment fee"),
    "month": ("March", "April", "May", "June", "last month"),
    "addon": ("sports", "movies", "premium channels", "international calling", "4K streaming"),
    "day": ("1st", "15th", "20th", "28th"),
    "since": (
        "since this morning",
        "since yesterday",
        "since 6am",
        "for 3 days",
        "since the storm last night",
        "since Monday",
    ),
    "interval": ("10 minutes", "half an hour", "hour", "few minutes"),
    "plan": ("100", "300", "500", "900"),
    "low": ("5", "12", "20", "40"),
    "colour": ("red", "orange", "amber", "white"),
}


def _fill(text: str, rng: random.Random) -> str:
    values = {key: rng.choice(options) for key, options in FILLERS.items()}
    values.update(
        amount=f"{rng.randint(20, 180)}.{rng.choice(['00', '99', '50'])}",
        amount2=f"{rng.randint(60, 260)}.{rng.choice(['00', '99'])}",
        years=rng.randint(1, 15),
        account=rng.randint(10_000_000, 99_999_999),
    )
    return text.format(**values)


def _noise(text: str, rng: random.Random) -> str:
    """Real customers write in lower case, with slang and the odd typo."""
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.2:
        for formal, slang in SLANG.items():
            text = text.replace(f" {formal} ", f" {slang} ")
    if rng.random() < 0.25:
        words = text.split(" ")
        index = rng.randrange(len(words))
        word = words[index]
        if len(word) > 3:
            cut = rng.randrange(len(word) - 1)
            words[index] = word[:cut] + word[cut + 1] + word[cut] + word[cut + 2 :]
        text = " ".join(words)
    return text


def replies_by_label() -> dict[tuple[str, str], list[str]]:
    """``(category, urgency)`` -> the replies of its situations, in ``SITUATIONS``' order."""
    replies: dict[tuple[str, str], list[str]] = {}
    for situation in SITUATIONS:
        replies.setdefault((situation.category, situation.urgency), []).extend(situation.replies)
    return replies


def make_ticket(rng: random.Random, index: int) -> dict:
    situation = rng.choice(SITUATIONS)
    urgency = situation.urgency
    cue = ""
    if situation.escalates and rng.random() < 0.3:
        cue = rng.choice(REPEAT_CUES if rng.random() < 0.5 else DEPENDENCY_CUES)
        urgency = "high"
    statement = _fill(rng.choice(situation.statements), rng)
    statement = statement[0].upper() + statement[1:] if rng.random() < 0.7 else statement
    if statement[-1] not in ".?!" and rng.random() < 0.8:
        statement += rng.choice(".!") if situation.urgency == "high" else "."
    parts = [
        rng.choice(OPENERS),
        _fill(rng.choice(CONTEXTS), rng),
        statement,
        cue,
        rng.choice(ASKS),
        rng.choice(SIGNOFFS),
    ]
    if rng.random() < 0.3:  # context after the problem, as often as before it
        parts[1], parts[2] = parts[2], parts[1]
    ticket = _noise(" ".join(part for part in parts if part), rng)
    reply = _fill(rng.choice(situation.replies), rng)
    return {"id": f"t{index:05d}", "ticket": ticket, "category": situation.category, "urgency": urgency, "reply": reply}


def _distinct(make, n: int, rng: random.Random, text_of, max_similarity: float = 0.6) -> list[dict]:
    """``n`` records from ``make(rng, index)`` such that no two texts share a normalized form or exceed
    ``max_similarity`` (5-gram Jaccard): every duplicate in a raw file is then one injected on purpose."""
    from datasketch import MinHashLSH

    from ftlib.curate import dedup_key, jaccard, minhash

    lsh = MinHashLSH(threshold=max_similarity * 0.8, num_perm=128)
    records, keys, attempts = [], set(), 0
    while len(records) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could only make {len(records)} distinct records of {n}")
        record = make(rng, len(records))
        text = text_of(record)
        if dedup_key(text) in keys:
            continue
        signature = minhash(text)
        if any(jaccard(text, text_of(records[i])) >= max_similarity for i in lsh.query(signature)):
            continue
        lsh.insert(len(records), signature)
        keys.add(dedup_key(text))
        records.append(record)
    return records


def generate_clean_tickets(n: int, rng: random.Random) -> list[dict]:
    """``n`` distinct tickets without flaws."""
    return _distinct(make_ticket, n, rng, lambda r: r["ticket"])


def generate_support_tickets(n: int = 3000, seed: int = 1234) -> list[dict]:
    """``n`` clean, distinct support tickets (no injected flaws); deterministic for a given seed."""
    return generate_clean_tickets(n, random.Random(seed))


def write_samples(folder: str | Path = "data/samples", seed: int = 1234) -> list[Path]:
    """(Re)generate the committed raw sample files and their flaw manifests."""
    from ftlib.flaws import inject_listing_flaws, inject_ticket_flaws
    from ftlib.tasks import SUPPORT_TICKETS

    folder = Path(folder)
    rng = random.Random(seed)
    raw, manifest = inject_ticket_flaws(generate_clean_tickets(2790, rng), SUPPORT_TICKETS, rng, replies_by_label())
    listings, listings_manifest = inject_listing_flaws(generate_listings(1425, seed), random.Random(seed))
    paths = []
    for name, records, truth in (("support_tickets", raw, manifest), ("listings", listings, listings_manifest)):
        truth["seed"] = seed
        paths.append(write_jsonl(records, folder / f"{name}.jsonl"))
        paths.append(write_json(truth, folder / f"{name}.manifest.json"))
    return paths


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
