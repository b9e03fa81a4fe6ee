import pytest

from ftlib import data, samples
from ftlib.profiles import sample_path
from ftlib.tasks import CATEGORIES, SUPPORT_TICKETS, URGENCIES

pytestmark = pytest.mark.unit


def test_generator_is_deterministic_and_seeded():
    assert samples.generate_support_tickets(50, seed=1) == samples.generate_support_tickets(50, seed=1)
    assert samples.generate_support_tickets(50, seed=1) != samples.generate_support_tickets(50, seed=2)


def test_committed_sample_file_is_the_generators_output():
    committed = data.read_jsonl(sample_path("support_tickets"))
    assert committed == samples.generate_support_tickets(), "run `python -m ftlib make-samples` and commit"


def test_tickets_follow_the_schema_and_cover_every_label():
    records = samples.generate_support_tickets(600)
    valid, rejected = data.validate_records(records, SUPPORT_TICKETS)
    assert not rejected
    assert set(data.label_counts(records, "category")) == set(CATEGORIES)
    assert set(data.label_counts(records, "urgency")) == set(URGENCIES)


def test_tickets_are_varied_not_templated():
    records = samples.generate_support_tickets(3000)
    assert len({r["ticket"] for r in records}) > 0.95 * len(records)
    lengths = [len(r["ticket"]) for r in records]
    assert min(lengths) < 40 and max(lengths) > 200


def test_urgency_cues_raise_urgency():
    records = samples.generate_support_tickets(3000)
    cued = [r for r in records if any(cue.lower() in r["ticket"].lower() for cue in samples.REPEAT_CUES + samples.DEPENDENCY_CUES)]
    assert cued and all(r["urgency"] == "high" for r in cued)
