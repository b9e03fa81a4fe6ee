"""Flaws injected into the shop chats, with their ground-truth manifest: duplicates, PII and markup in customer
turns, placeholder last turns, chats in another language, other key layouts and over-long pastes. The shared
pieces (fake PII, near variants, placing copies) are ``ftlib.data.flaws``'s."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from ftlib.data.flaws import fake_pii, near_variant, place_copies

CHAT_FLAW_RATES = {
    "exact_duplicate": 0.02,
    "near_duplicate": 0.02,
    "pii": 0.05,
    "html": 0.02,
    "junk": 0.02,
    "non_english": 0.02,
    "layout": 0.03,
    "over_long": 0.01,
}

# (topic, customer turns, agent replies): whole chats in Spanish, French or German.
NON_ENGLISH_CHATS = (
    (
        "order_status",
        ("Hola, hice un pedido hace una semana y todavía no ha llegado. ¿Dónde está mi pedido {order}?",),
        ("Hola, su pedido {order} salió de nuestro almacén ayer y llegará en dos o tres días laborables.",),
    ),
    (
        "returns",
        (
            "Buenos días, quiero devolver el {item} porque es demasiado pequeño.",
            "El número de pedido es {order}, gracias.",
        ),
        (
            "¡Claro! ¿Me puede dar el número de pedido, por favor?",
            "Le he enviado por correo una etiqueta de devolución gratuita para el pedido {order}.",
        ),
    ),
    (
        "damaged_item",
        ("Hola, el {item} llegó roto y la caja estaba muy dañada. Pedido {order}, por favor ayúdenme.",),
        ("Lo siento mucho. Le enviamos un {item} nuevo sin coste para el pedido {order}.",),
    ),
    (
        "payment",
        ("Bonjour, on m'a débité deux fois pour la commande {order}, est-ce que vous pouvez vérifier?",),
        ("Bonjour, le deuxième montant est une pré-autorisation qui disparaîtra sous 3 à 5 jours ouvrés.",),
    ),
    (
        "delivery_address",
        (
            "Bonjour, je dois changer l'adresse de livraison de ma commande, je ne suis plus chez moi.",
            "C'est la commande {order}, la nouvelle adresse est dans mon compte. Merci beaucoup!",
        ),
        (
            "Bien sûr, quel est le numéro de votre commande?",
            "C'est fait: la commande {order} sera livrée à la nouvelle adresse de votre compte.",
        ),
    ),
    (
        "product_question",
        ("Bonjour, est-ce que le {item} est disponible en noir? Je voudrais le commander pour ma fille.",),
        ("Bonjour, oui, le {item} est disponible en noir et en blanc.",),
    ),
    (
        "damaged_item",
        ("Hallo, das {item} ist kaputt angekommen und die Verpackung war nass. Bestellung {order}.",),
        ("Das tut mir leid! Wir schicken Ihnen kostenlos ein neues {item} für die Bestellung {order}.",),
    ),
    (
        "order_status",
        (
            "Guten Tag, meine Bestellung ist seit einer Woche unterwegs und die Sendungsverfolgung zeigt nichts an.",
            "Die Bestellnummer ist {order}, danke für die Hilfe.",
        ),
        (
            "Guten Tag! Wie lautet Ihre Bestellnummer?",
            "Ihre Bestellung {order} ist beim Kurier und kommt in zwei Tagen bei Ihnen an.",
        ),
    ),
    (
        "returns",
        ("Hallo, ich möchte das {item} zurückschicken, weil es mir nicht gefällt. Wie mache ich das bitte?",),
        (
            "Hallo! Sie können das {item} innerhalb von 30 Tagen kostenlos zurücksenden; das Etikett ist per"
            " E-Mail unterwegs.",
        ),
    ),
)


CHAT_JUNK_TEXTS = ("asdf", "test", "testing 123", "...", "?", "xxx", "n/a", "qwerty", "blah", "hello", "", "  ")


CONFIRMATION_LINES = (
    "{q} x {item} ({colour}) ........ £{price}",
    "Item {k}: {item}, colour {colour}, quantity {q}, unit price £{price}, status: allocated",
)


LOG_TEMPLATES = (
    "[{t}] ERROR checkout.payment: gateway timeout after {a}0s (code 504), retrying request {k} of 20",
    "[{t}] WARN basket.sync: item {item} quantity mismatch (expected {q}, got 0), reloading basket",
    "[{t}] ERROR session.auth: token expired for guest session, redirecting to /checkout/login (attempt {k})",
    "[{t}] INFO payment.3ds: challenge window opened, waiting for bank response ({a} seconds elapsed)",
)


COMPLAINT_SENTENCES = (
    "I have been a loyal customer for years and I have never been treated like this before.",
    "I first contacted you over a week ago and I was promised a call back that never happened.",
    "Your chat bot kept sending me round in circles and never let me speak to a person.",
    "I took a day off work to wait for the courier and nobody turned up or even sent a message.",
    "The tracking page said the parcel was out for delivery three days in a row and then went blank.",
    "When I finally got through on the phone I was on hold for forty minutes before being cut off.",
    "The second agent told me something completely different from the first one.",
    "I was told a refund had been issued, but my bank says nothing has been sent.",
    "I bought this as a birthday present and the birthday has now been and gone.",
    "Honestly the whole experience has been exhausting and I am close to giving up on your shop.",
    "I have attached every email you sent me so you can see the dates for yourself.",
    "I expect a proper answer this time and not another copy and paste reply.",
    "My neighbour ordered from you last month and had exactly the same problem, so this is not a one-off.",
    "I also noticed the price went up by five pounds the day after I ordered, which feels a bit cheeky.",
)


def _customer_turns(messages: list[dict]) -> list[int]:
    return [i for i, m in enumerate(messages) if m["role"] == "user"]


def _customer_text(record: dict) -> str:
    """The customer's turns of a chat, one per line (what makes two chats duplicates)."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def _long_paste(rng: random.Random, item: str, order: str, products: Sequence) -> str:
    """Something long a customer pastes into the chat: an order confirmation, an error log or a complaint."""
    kind = rng.choice(("confirmation", "log", "complaint"))
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < 3200:
        product = rng.choice(products)
        values = {
            "q": rng.randint(1, 3),
            "item": product.name if len(parts) % 3 else item,
            "colour": rng.choice(product.colours),
            "price": f"{product.price:.2f}",
            "k": len(parts) + 1,
            "a": rng.randint(1, 9),
            "t": f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        }
        if kind == "confirmation":
            parts.append(rng.choice(CONFIRMATION_LINES).format(**values))
        elif kind == "log":
            parts.append(rng.choice(LOG_TEMPLATES).format(**values))
        else:
            parts.append(rng.choice(COMPLAINT_SENTENCES))
    body = "\n".join(parts) if kind != "complaint" else " ".join(parts)
    lead = {
        "confirmation": f"Here is my whole confirmation email for {order}:\n",
        "log": "the checkout keeps failing, this is what the page showed:\n",
        "complaint": "I want to explain everything that has happened. ",
    }[kind]
    return lead + body


def inject_chat_flaws(
    clean: list[dict], rng: random.Random, products: Sequence, rates: dict[str, float] | None = None
) -> tuple[list[dict], dict]:
    """Shop chats with duplicates, PII and markup in customer turns, placeholder last turns, chats in
    another language, other key layouts and over-long pastes, plus the ground-truth manifest.

    The flaws touch the customer's turns (``role: user``) except markup, which may sit in any turn.

    Args:
        products: the shop's products (``ftlib.data.chats.PRODUCTS``: name, colours, price) that pastes list.
    """
    rates = rates or CHAT_FLAW_RATES
    total = round(len(clean) / (1 - rates["exact_duplicate"] - rates["near_duplicate"]))
    records = [{**r, "messages": [dict(m) for m in r["messages"]]} for r in clean]
    order = list(range(len(records)))
    rng.shuffle(order)
    flaws: dict[str, dict] = {}
    cursor = 0
    for name in ("pii", "html", "junk", "non_english", "layout", "over_long"):
        for index in order[cursor : cursor + round(rates[name] * total)]:
            record = records[index]
            records[index], detail = _chat_flaw(name, record, rng, products)
            flaws[record["id"]] = detail
        cursor += round(rates[name] * total)
    sources = [records[i] for i in order[cursor:] if len(_customer_text(records[i]).split()) >= 10]
    rng.shuffle(sources)
    copies = _chat_copies(sources, rates, total, rng, flaws)
    return place_copies(records, copies, flaws, rates, "shop_chats", rng)


def _chat_flaw(name: str, record: dict, rng: random.Random, products: Sequence) -> tuple[dict, dict]:
    """One in-place flaw of ``inject_chat_flaws``: the flawed record (the same object, or a new one for another
    layout) and its manifest entry."""
    messages = record["messages"]
    detail: dict = {"class": name}
    if name == "pii":
        turn = rng.choice(_customer_turns(messages))
        items = [fake_pii(rng) for _ in range(rng.choice((1, 1, 2)))]
        sentences = [sentence for _, _, sentence in items]
        text = messages[turn]["content"]
        messages[turn]["content"] = " ".join([text, *sentences] if rng.random() < 0.7 else [*sentences, text])
        detail["pii"] = [{"type": kind, "text": text, "turn": turn} for kind, text, _ in items]
    elif name == "html":
        turn = rng.randrange(len(messages))
        text = messages[turn]["content"]
        messages[turn]["content"] = rng.choice(
            (
                f"<p>{text}</p>",
                f'<div class="msg">{text}<br/></div>',
                text.replace(" ", "&nbsp;", 2),
                text.replace("'", "&#39;") if "'" in text else f"<b>{text}</b>",
                f"{text}<br><br>Sent from my iPhone",
            )
        )
        detail["turn"] = turn
    elif name == "junk":
        turn = _customer_turns(messages)[-1]
        messages[turn]["content"] = rng.choice(CHAT_JUNK_TEXTS)
        detail["turn"] = turn
    elif name == "non_english":
        topic, customer, agent = rng.choice(NON_ENGLISH_CHATS)
        found = re.search(r"#\d{5}", messages[-1]["content"])
        values = {
            "order": found.group(0) if found else f"#{rng.randint(10_000, 99_999)}",
            "item": rng.choice(products).name,
        }
        record["topic"] = topic
        record["messages"] = [
            {"role": role, "content": text.format(**values)}
            for pair in zip(customer, agent, strict=True)
            for role, text in zip(("user", "assistant"), pair, strict=True)
        ]
    elif name == "layout":
        layout = rng.choice(("conversation", "sharegpt"))
        detail["layout"] = layout
        if layout == "conversation":
            return {"id": record["id"], "topic": record["topic"], "conversation": messages}, detail
        speaker = {"user": "human", "assistant": "gpt"}
        turns = [{"from": speaker[m["role"]], "value": m["content"]} for m in messages]
        return {"id": record["id"], "topic": record["topic"], "conversations": turns}, detail
    else:
        turn = rng.choice(_customer_turns(messages))
        found = re.search(r"#\d{5}", " ".join(m["content"] for m in messages))
        item = next((p.name for p in products if p.name in messages[-1]["content"]), rng.choice(products).name)
        paste = _long_paste(rng, item, found.group(0) if found else "my order", products)
        messages[turn]["content"] = f"{messages[turn]['content']}\n{paste}"
        detail["turn"] = turn
    return record, detail


def _chat_copies(
    sources: list[dict], rates: dict[str, float], total: int, rng: random.Random, flaws: dict[str, dict]
) -> list[tuple[str, dict]]:
    """The exact and near duplicates of ``inject_chat_flaws``: (source id, copy) pairs, each entered in ``flaws``."""
    from ftlib.data.dedup import jaccard

    copies = []
    for name in ("exact_duplicate", "near_duplicate"):
        wanted = len(copies) + round(rates[name] * total)
        while len(copies) < wanted:
            source = sources.pop()
            copy = {
                **source,
                "id": f"{source['id']}-dup{len(copies)}",
                "messages": [dict(m) for m in source["messages"]],
            }
            turns = _customer_turns(copy["messages"])
            turn = max(turns, key=lambda i: len(copy["messages"][i]["content"]))
            detail = {"class": name, "of": source["id"]}
            if name == "near_duplicate":
                text, variant = near_variant(copy["messages"][turn]["content"], rng, kinds=("word",))
                copy["messages"][turn]["content"] = text
                detail.update(variant=variant, turn=turn)
                if jaccard(_customer_text(copy), _customer_text(source)) < 0.75:  # too short: one word is no small edit
                    continue
            elif rng.random() < 0.5:  # the same chat pasted again: only whitespace or case differ
                text = copy["messages"][turn]["content"]
                copy["messages"][turn]["content"] = rng.choice((f" {text}  ", text.lower(), text.replace(" ", "  ", 1)))
            flaws[copy["id"]] = detail
            copies.append((source["id"], copy))
    return copies
