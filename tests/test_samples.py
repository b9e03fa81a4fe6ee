import json

import pytest

from ftlib import curate, data, flaws, samples
from ftlib.profiles import sample_path
from ftlib.tasks import CATEGORIES, SUPPORT_TICKETS, URGENCIES


@pytest.mark.unit
def test_generators_are_deterministic_and_seeded():
    import random

    assert samples.generate_clean_tickets(40, random.Random(1)) == samples.generate_clean_tickets(40, random.Random(1))
    assert samples.generate_clean_tickets(40, random.Random(1)) != samples.generate_clean_tickets(40, random.Random(2))
    assert samples.generate_listings(30, seed=5) == samples.generate_listings(30, seed=5)


@pytest.mark.integration
def test_committed_samples_are_the_generators_output(tmp_path):
    samples.write_samples(tmp_path)
    for name in ("support_tickets.jsonl", "support_tickets.manifest.json", "listings.jsonl", "listings.manifest.json"):
        assert (tmp_path / name).read_bytes() == (sample_path("support_tickets").parent / name).read_bytes(), (
            f"data/samples/{name} is stale: run `python -m ftlib make-samples` and commit"
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
def test_copies_come_after_their_source():
    raw = data.read_jsonl(sample_path("support_tickets"))
    position = {r["id"]: i for i, r in enumerate(raw)}
    manifest = json.loads(sample_path("support_tickets").with_suffix(".manifest.json").read_text())
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
    assert not curate.near_duplicate_groups(texts, threshold=0.7)  # the pipeline's threshold
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
    assert cards and all(curate.luhn_valid("".join(c for c in card if c.isdigit())) for card in cards)
