"""The ``shop_chats`` sample: multi-turn chats between a customer and an online shop's support agent.

The catalogue, the scenarios and every phrasing are data (``data/generators/shop_chats.yaml``); the code below
only composes a chat from them.

Northwind's policy, which every agent reply follows:
* orders ship within 1 working day; standard delivery takes 3-5 working days;
* returns: within 30 days of delivery, free return label; refunds reach the original payment
  method 5-7 working days after we receive the item;
* damaged, faulty, wrong or incomplete items: replaced free (or refunded in full), no need to send a
  damaged item back; electricals carry a 2-year warranty;
* a second charge is usually a pending authorisation that drops off within 3-5 working days;
* a delivery address can be changed until the order ships; after that, through the courier's link.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ftlib.data.banks import distinct, load_bank


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


@dataclass(frozen=True)
class ChatScenario:
    topic: str
    problems: tuple[str, ...]  # the customer's first statement of the problem, without the order number
    finals: tuple[str, ...]  # the agent's resolving reply
    followups: tuple[tuple[tuple[str, ...], str], ...] = ()  # a further question and its answer
    needs_order: bool = True
    needs: str = ""  # "sizes", "electrical": which products fit


def _pairs(entries: list[dict]) -> tuple[tuple[tuple[str, ...], str], ...]:
    """YAML's ``{questions: [...], answer: ...}`` entries as (questions, answer) pairs."""
    return tuple((tuple(e["questions"]), e["answer"]) for e in entries)


def _product(entry: dict) -> Product:
    return Product(
        entry["name"],
        entry["short"],
        entry["price"],
        tuple(entry["damages"]),
        tuple(entry["parts"]),
        _pairs(entry["facts"]),
        tuple(entry["sizes"]),
        entry["electrical"],
        tuple(entry["colours"]),
    )


def _scenario(entry: dict) -> ChatScenario:
    return ChatScenario(
        entry["topic"],
        tuple(entry["problems"]),
        tuple(entry["finals"]),
        _pairs(entry["followups"]),
        entry["needs_order"],
        entry["needs"],
    )


_BANK = load_bank("shop_chats")
_WORDS = _BANK["vocabulary"]
PRODUCTS: tuple[Product, ...] = tuple(_product(entry) for entry in _BANK["products"])
CHAT_SCENARIOS: tuple[ChatScenario, ...] = tuple(_scenario(entry) for entry in _BANK["scenarios"])
CHAT_TOPICS = tuple(_WORDS["chat_topics"])
COURIERS = tuple(_WORDS["couriers"])
WEEKDAYS = tuple(_WORDS["weekdays"])
MONTHS = tuple(_WORDS["months"])
PLACES = tuple(_WORDS["places"])
POSTCODE_AREAS = tuple(_WORDS["postcode_areas"])
RETURN_REASONS = tuple(_WORDS["return_reasons"])
WRONG_ITEMS = tuple(_WORDS["wrong_items"])
DISCOUNT_CODES = tuple(_WORDS["discount_codes"])
SLANG = dict(_WORDS["slang"])
CHAT_OPENERS = tuple(_WORDS["chat_openers"])
CHAT_ASKS = tuple(_WORDS["chat_asks"])
ORDER_MENTIONS = tuple(_WORDS["order_mentions"])
ASK_ORDER = tuple(_WORDS["ask_order"])
GIVE_ORDER = tuple(_WORDS["give_order"])
ORDER_FIRST = tuple(_WORDS["order_first"])
WHAT_ABOUT = tuple(_WORDS["what_about"])
PRODUCT_INTROS = tuple(_WORDS["product_intros"])
WHAT_PRODUCT = tuple(_WORDS["what_product"])
WHICH_PRODUCT = tuple(_WORDS["which_product"])
VAGUE_PRODUCT = tuple(_WORDS["vague_product"])
NAME_PRODUCT = tuple(_WORDS["name_product"])
SINGULAR = dict(_WORDS["singular"])
PLURAL = dict(_WORDS["plural"])
ORDER_MENTIONS_ITEM = tuple(_WORDS["order_mentions_item"])
GIVE_ORDER_ITEM = tuple(_WORDS["give_order_item"])
ORDER_FIRST_ITEM = tuple(_WORDS["order_first_item"])

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
    from ftlib.data.cleaning import is_junk

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
    return distinct(make_chat, n, random.Random(seed), customer_text, chat_text)
