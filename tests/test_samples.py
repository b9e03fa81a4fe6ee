import json

import pytest

from ftlib.core.tasks import CATEGORIES, SUPPORT_TICKETS, URGENCIES
from ftlib.data import chat_flaws, chats, cleaning, dedup, flaws, listings, samples
from ftlib.data import records as data
from ftlib.engine.profiles import sample_path

SAMPLES = sample_path("support_tickets").parent


def _chats() -> tuple[list[dict], dict]:
    return data.read_jsonl(SAMPLES / "shop_chats.jsonl"), json.loads((SAMPLES / "shop_chats.manifest.json").read_text())


def _alternates(messages: list[dict]) -> bool:
    roles = [m["role"] for m in messages]
    return 2 <= len(roles) <= 6 and roles == ["user", "assistant"] * (len(roles) // 2)


@pytest.mark.unit
def test_generators_are_deterministic_and_seeded():
    import random

    assert samples.generate_clean_tickets(40, random.Random(1)) == samples.generate_clean_tickets(40, random.Random(1))
    assert samples.generate_clean_tickets(40, random.Random(1)) != samples.generate_clean_tickets(40, random.Random(2))
    assert listings.generate_listings(30, seed=5) == listings.generate_listings(30, seed=5)
    assert chats.generate_shop_chats(30, seed=5) == chats.generate_shop_chats(30, seed=5)
    assert chats.generate_shop_chats(30, seed=5) != chats.generate_shop_chats(30, seed=6)


@pytest.mark.integration
def test_committed_samples_are_the_generators_output(tmp_path):
    samples.write_samples(tmp_path)
    names = ("support_tickets", "listings", "shop_chats")
    for name in [f"{n}.jsonl" for n in names] + [f"{n}.manifest.json" for n in names]:
        assert (tmp_path / name).read_bytes() == (sample_path("support_tickets").parent / name).read_bytes(), (
            f"data/samples/{name} is stale: run `python -m ftlib make-samples --overwrite` and commit"
        )


@pytest.mark.unit
def test_manifest_counts_follow_the_rates():
    manifest = json.loads(sample_path("support_tickets").with_suffix(".manifest.json").read_text())
    assert manifest["records"] == 3000
    for name, rate in flaws.TICKET_FLAW_RATES.items():
        assert manifest["counts"][name] == round(rate * 3000), name
    raw = data.read_jsonl(sample_path("support_tickets"))
    assert len(raw) == 3000 and len({r["id"] for r in raw}) == 3000
    listings = json.loads(sample_path("listings").with_suffix(".manifest.json").read_text())
    assert listings["records"] == 1500 and listings["counts"]["exact_duplicate"] == 45


@pytest.mark.unit
@pytest.mark.parametrize("name", ["support_tickets", "shop_chats"])
def test_copies_come_after_their_source(name):
    raw = data.read_jsonl(SAMPLES / f"{name}.jsonl")
    position = {r["id"]: i for i, r in enumerate(raw)}
    manifest = json.loads((SAMPLES / f"{name}.manifest.json").read_text())
    for record_id, flaw in manifest["flaws"].items():
        if "of" in flaw:
            assert position[flaw["of"]] < position[record_id]


@pytest.mark.unit
def test_clean_tickets_cover_every_label_and_are_distinct():
    import random

    records = samples.generate_clean_tickets(400, random.Random(3))
    valid, rejected = data.validate_records(records, SUPPORT_TICKETS)
    assert not rejected
    assert set(data.label_counts(records, "category")) == set(CATEGORIES)
    assert set(data.label_counts(records, "urgency")) == set(URGENCIES)
    texts = [r["ticket"] for r in records]
    assert not dedup.near_duplicate_groups(texts, threshold=0.7)  # the pipeline's threshold
    lengths = [len(t) for t in texts]
    assert min(lengths) < 60 and max(lengths) > 180


@pytest.mark.unit
def test_urgency_cues_raise_urgency():
    import random

    rng = random.Random(0)
    records = [samples.make_ticket(rng, i) for i in range(2000)]
    cued = [
        r
        for r in records
        if any(cue.lower() in r["ticket"].lower() for cue in samples.REPEAT_CUES + samples.DEPENDENCY_CUES)
    ]
    assert len(cued) > 100 and all(r["urgency"] == "high" for r in cued)


@pytest.mark.unit
def test_card_numbers_are_luhn_valid():
    import random

    rng = random.Random(0)
    cards = [text for kind, text, _ in (flaws.fake_pii(rng) for _ in range(300)) if kind == "CARD"]
    assert cards and all(cleaning.luhn_valid("".join(c for c in card if c.isdigit())) for card in cards)


@pytest.mark.unit
def test_shop_chat_manifest_counts_follow_the_rates():
    raw, manifest = _chats()
    assert manifest["task"] == "shop_chats" and manifest["records"] == len(raw) == 1500
    assert len({r["id"] for r in raw}) == 1500
    for name, rate in chat_flaws.CHAT_FLAW_RATES.items():
        assert manifest["counts"][name] == round(rate * 1500), name
    assert set(manifest["counts"]) == {
        "exact_duplicate",
        "near_duplicate",
        "pii",
        "html",
        "junk",
        "non_english",
        "layout",
        "over_long",
    }


@pytest.mark.unit
def test_clean_shop_chats_cover_every_topic_and_alternate():
    raw, manifest = _chats()
    clean = [r for r in raw if r["id"] not in manifest["flaws"]]
    assert {r["topic"] for r in clean} == set(chats.CHAT_TOPICS)
    for record in clean:
        assert set(record) == {"id", "topic", "messages"}, record["id"]
        assert _alternates(record["messages"]), record["id"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in record["messages"])
    assert {len(r["messages"]) for r in clean} == {2, 4, 6}


@pytest.mark.unit
def test_generated_shop_chats_are_clean_and_distinct():
    generated = chats.generate_shop_chats(300, seed=3)
    customer = [chats.customer_text(c) for c in generated]
    assert not dedup.near_duplicate_groups(customer, threshold=0.7)
    assert not dedup.near_duplicate_groups([chats.chat_text(c) for c in generated], threshold=0.7)
    for chat in generated:
        turns = [m["content"] for m in chat["messages"] if m["role"] == "user"]
        assert not any(cleaning.is_junk(t) for t in turns), turns
        assert not cleaning.non_english(" ".join(turns)), turns
        assert not any(cleaning.scrub_pii(m["content"])[1] for m in chat["messages"]), chat
    # the agent's reply names the order the customer gave
    with_order = [c for c in generated if "#" in c["messages"][-1]["content"]]
    assert len(with_order) > 150
    for chat in with_order:
        number = chat["messages"][-1]["content"].split("#")[1][:5]
        assert number in chats.customer_text(chat), chat


@pytest.mark.unit
def test_shop_chat_flaws_are_where_the_manifest_says():
    raw, manifest = _chats()
    by_id = {r["id"]: r for r in raw}
    for record_id, flaw in manifest["flaws"].items():
        record, name = by_id[record_id], flaw["class"]
        if name == "layout":
            key = {"conversation": "conversation", "sharegpt": "conversations"}[flaw["layout"]]
            assert "messages" not in record and key in record
            continue
        messages = record["messages"]
        assert _alternates(messages) or name == "over_long", record_id
        customer = chats.customer_text(record)
        if name == "pii":
            for item in flaw["pii"]:
                assert messages[item["turn"]]["role"] == "user" and item["text"] in messages[item["turn"]]["content"]
        elif name == "html":
            assert cleaning.strip_markup(messages[flaw["turn"]]["content"])[1]
        elif name == "junk":
            assert cleaning.is_junk([m for m in messages if m["role"] == "user"][-1]["content"])
        elif name == "non_english":
            assert cleaning.non_english(customer)
        elif name == "exact_duplicate":
            source = by_id[flaw["of"]]
            assert dedup.dedup_key(customer) == dedup.dedup_key(chats.customer_text(source))
        elif name == "near_duplicate":
            source = chats.customer_text(by_id[flaw["of"]])
            assert dedup.dedup_key(customer) != dedup.dedup_key(source)
            assert dedup.jaccard(customer, source) >= 0.7
            assert record["messages"][-1] == by_id[flaw["of"]]["messages"][-1]


@pytest.mark.integration
def test_clean_shop_chats_fit_the_token_budget_and_over_long_ones_do_not():
    import yaml

    from ftlib.engine.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    spec = yaml.safe_load((SAMPLES.parent / "tasks" / "shop_chats.yaml").read_text())
    raw, manifest = _chats()

    def length(record: dict) -> int:
        system = [{"role": "system", "content": spec["instruction"]}]
        return len(tokenizer.apply_chat_template(system + record["messages"], tokenize=True)["input_ids"])

    clean = [length(r) for r in raw if r["id"] not in manifest["flaws"]]
    assert max(clean) <= 220
    long = [
        length(raw_record)
        for raw_record in raw
        if manifest["flaws"].get(raw_record["id"], {}).get("class") == "over_long"
    ]
    assert long and min(long) > 600


# ---------------------------------------------------------------- variety of the support-ticket generator

HIGH_RULES = ("fully_down", "security", "money_lost", "safety", "dependency", "repeated")


def _four_gram_share(texts: list[str]) -> float:
    """Distinct word 4-grams over all word 4-grams (the measure of tests/test_field_test.py)."""
    import re

    grams = []
    for text in texts:
        words = re.findall(r"[a-z0-9']+", text.lower())
        grams += [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) / max(1, len(grams))


@pytest.fixture(scope="module")
def composed() -> list[tuple[dict, dict]]:
    import random

    rng = random.Random(11)
    return [samples.compose_ticket(rng, i) for i in range(3000)]


@pytest.mark.unit
def test_generated_tickets_are_diverse():
    """Measured on 1000 tickets: 0.33-0.34 for the template generator before the phrase banks, 0.49-0.50 after."""
    import random

    for seed in (0, 1):
        share = _four_gram_share([r["ticket"] for r in samples.generate_clean_tickets(1000, random.Random(seed))])
        assert share >= 0.45, share


@pytest.mark.unit
def test_every_rule_and_every_cell_has_many_phrasings(composed):
    phrasings = samples.ticket_phrasings()
    cues = samples.rule_cues()
    assert all(isinstance(text, str) for text in [p.text for p in phrasings] + [c for cs in cues.values() for c in cs])
    assert set(samples.ticket_banks()["rules"]) == set(HIGH_RULES)
    for rule in HIGH_RULES:
        own = {p.text for p in phrasings if p.rule == rule and not p.hard_negative} | set(cues.get(rule, ()))
        assert len(own) >= 20, (rule, len(own))
    for category in CATEGORIES:
        for urgency in URGENCIES:
            bank = {p.text for p in phrasings if (p.category, p.urgency) == (category, urgency)}
            if urgency == "high":  # a medium statement raised by a cue is a phrasing of the high cell too
                bank |= {cue for fitting in samples.escalation_cues(category).values() for cue in fitting}
            assert len(bank) >= 20, (category, urgency, len(bank))
            used = {t["decisive"] for r, t in composed if (r["category"], r["urgency"]) == (category, urgency)}
            assert len(used) >= 20, (category, urgency, len(used))


@pytest.mark.unit
def test_a_repeated_failure_cue_fits_its_ticket(composed):
    """A cancellation request is never "fixed" by an engineer: cells take only the cue groups that fit them."""
    groups = samples.ticket_banks()["rules"]["repeated"]["cues"]
    technical = set(groups["faults"]) | set(groups["visits"])
    cancellations = [t for r, t in composed if r["category"] == "cancellation" and t["rule"] == "repeated"]
    assert len(cancellations) >= 30 and not any(t["decisive"] in technical for t in cancellations)
    assert not any(cue in technical for cue in samples.escalation_cues("cancellation")["repeated"])
    assert set(samples.escalation_cues("outage")["dependency"]) == set(samples.DEPENDENCY_CUES)


@pytest.mark.unit
def test_every_high_rule_is_generated_and_its_cue_can_sit_mid_ticket(composed):
    for rule in HIGH_RULES:
        mine = [(r, t) for r, t in composed if t["rule"] == rule and not t["hard_negative"]]
        assert len(mine) >= 40 and all(r["urgency"] == "high" for r, _ in mine), rule
        middle = []
        for record, trace in mine:
            names = [part for part, _ in trace["parts"]]
            decisive = "cue" if "cue" in names else "statement"
            at = names.index(decisive)
            text, cue = record["ticket"], dict(trace["parts"])[decisive]
            if set(names[:at]) - {"opener"} and set(names[at + 1 :]) - {"signoff"} and cue in text:
                middle.append(text.index(cue) >= 30 and len(text) - text.index(cue) - len(cue) >= 30)
        assert sum(middle) >= 5, rule


@pytest.mark.unit
def test_hard_negatives_share_words_with_a_rule_but_stay_low_or_medium(composed):
    negatives = [p for p in samples.ticket_phrasings() if p.hard_negative]
    assert all(p.urgency in ("low", "medium") and p.rule in HIGH_RULES for p in negatives)
    assert {p.rule for p in negatives} == set(HIGH_RULES)
    texts = " ".join(p.text.lower() for p in negatives)
    for words in ("not urgent", "fraud", "pin", "engineer", "business", "overcharged", "completely down", "warm"):
        assert words in texts, words
    generated = [(r, t) for r, t in composed if t["hard_negative"]]
    assert len(generated) >= 100
    assert all(r["urgency"] in ("low", "medium") and "cue" not in dict(t["parts"]) for r, t in generated)
    assert len({t["decisive"] for _, t in generated}) >= 30


@pytest.mark.unit
def test_tickets_come_in_every_register_and_length(composed):
    registers = {t["register"] for _, t in composed}
    assert registers == set(samples.ticket_banks()["registers"])
    lengths = sorted(len(r["ticket"]) for r, _ in composed)
    assert lengths[0] < 40 and lengths[-1] > 300
    assert sum(n < 80 for n in lengths) > 300 and sum(n > 250 for n in lengths) > 200
    assert any("\n" in r["ticket"] for r, _ in composed)  # formal emails: greeting, body, sign-off


@pytest.mark.unit
def test_clean_tickets_trip_no_curation_step_and_every_label_has_replies():
    import random

    records = samples.generate_clean_tickets(1000, random.Random(4))
    for record in records:
        text = record["ticket"]
        assert not cleaning.scrub_pii(text)[1] and not cleaning.is_junk(text), text
        assert not cleaning.non_english(text) and not cleaning.strip_markup(text)[1], text
        assert "{" not in text and "{" not in record["reply"], record
    replies = samples.replies_by_label()
    assert set(replies) == {(c, u) for c in CATEGORIES for u in URGENCIES}
    assert all(len(texts) >= 2 and not any("{" in t for t in texts) for texts in replies.values())


@pytest.mark.unit
def test_replies_name_only_what_the_ticket_says(composed):
    """A reply that names an amount or a speed takes it from its own ticket."""
    import re

    specific = 0
    for record, _ in composed:
        named = re.findall(r"\$\d+\.\d\d|\b\d+(?= Mbps)", record["reply"])
        specific += bool(named)
        assert all(value in record["ticket"] for value in named), record
    assert specific >= 120


@pytest.mark.unit
def test_narrow_banks_keep_the_rules_and_cut_each_list_of_phrasings():
    """The reference run's narrow data: the same cells, rules and replies, fewer ways to put a problem."""
    import random
    import re

    from ftlib.data.samples import NARROW_PHRASINGS, escalation_cues, period_banks, ticket_banks

    full, narrow = ticket_banks(), period_banks("narrow")
    assert set(narrow["cells"]) == set(full["cells"]) and narrow["rules"] == full["rules"]
    for category, cells in full["cells"].items():
        for urgency, cell in cells.items():
            cut = narrow["cells"][category][urgency]
            assert cut.get("statements", []) == cell.get("statements", [])[:NARROW_PHRASINGS]
            for key in ("rules", "hard_negatives"):
                assert set(cut.get(key) or {}) == set(cell.get(key) or {})  # every rule still has its phrasings
                for rule, texts in (cell.get(key) or {}).items():
                    assert cut[key][rule] == texts[:NARROW_PHRASINGS]
            assert cut["replies"] == cell["replies"]
    assert full["cells"]["billing"]["low"]["statements"] != narrow["cells"]["billing"]["low"]["statements"]
    statements = {t["ticket"] for t in samples.generate_clean_tickets(60, random.Random(5), period="narrow")}
    assert len(statements) == 60
    # every narrow ticket's decisive sentence (its cue, else its statement) is one of the kept phrasings, filled in
    kept = {text for c in narrow["cells"].values() for cell in c.values() for text in cell.get("statements", [])}
    kept |= {
        text
        for c in narrow["cells"].values()
        for cell in c.values()
        for key in ("rules", "hard_negatives")
        for texts in (cell.get(key) or {}).values()
        for text in texts
    }
    kept |= {cue for c in full["cells"] for cues in escalation_cues(c).values() for cue in cues[:NARROW_PHRASINGS]}
    patterns = [re.compile(re.sub(r"\\{\w+\\}", ".+", re.escape(text)) + "$") for text in kept]
    rng = random.Random(7)
    for index in range(80):
        _, how = samples.compose_ticket(rng, index, period="narrow")
        assert any(p.match(how["decisive"]) for p in patterns), how["decisive"]
