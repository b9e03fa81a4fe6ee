"""The hand-written field-test set of support tickets (``ftlib.engine.profiles.field_test_path``).

It must stay a fair test of generalization: labelled within the task's label sets, balanced enough to score
every label, and sharing no exact or near-duplicate ticket with anything a model could train on (the
generator's output, the built-in sample, or the curated splits made from it).
"""

import random
import re
from collections import Counter
from dataclasses import replace

import pytest
from scored import result

from ftlib.core.tasks import SUPPORT_TICKETS
from ftlib.data.curate import curate, curated_splits, normalize_layout
from ftlib.data.dedup import dedup_key, near_duplicate_groups
from ftlib.data.field_test import assign_halves, check_halves, field_half
from ftlib.data.records import DataError, read_jsonl, read_records, write_jsonl
from ftlib.data.samples import generate_clean_tickets
from ftlib.engine.profiles import field_test_path, sample_path

NEAR = 0.7  # the curation pipeline's near-duplicate threshold (Jaccard of character 5-grams)


@pytest.fixture(scope="module")
def field() -> list[dict]:
    return read_jsonl(field_test_path())


@pytest.fixture(scope="module")
def sample_tickets() -> list[str]:
    """Every ticket text of the built-in sample, read through the curation's layout step (aliases, nesting)."""
    records = [normalize_layout(r, SUPPORT_TICKETS)[0] for r in read_jsonl(sample_path("support_tickets"))]
    return [r["ticket"] for r in records if isinstance(r.get("ticket"), str)]


@pytest.fixture(scope="module")
def generated_tickets() -> list[str]:
    return [r["ticket"] for r in generate_clean_tickets(3000, random.Random(7))]


def near_pairs(field_texts: list[str], other_texts: list[str]) -> list[tuple[str, str]]:
    """(field ticket, other ticket) pairs at or above the near-duplicate threshold."""
    n = len(field_texts)
    groups = near_duplicate_groups(field_texts + other_texts, threshold=NEAR)
    pairs = []
    for group in groups:
        mine = [i for i in group if i < n]
        theirs = [i - n for i in group if i >= n]
        pairs += [(field_texts[i], other_texts[j]) for i in mine for j in theirs]
    return pairs


def four_gram_share(texts: list[str]) -> float:
    """Distinct word 4-grams over all word 4-grams: how little the texts repeat each other."""
    grams = []
    for text in texts:
        words = re.findall(r"[a-z0-9']+", text.lower())
        grams += [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) / max(1, len(grams))


@pytest.mark.unit
def test_field_set_parses_with_unique_ids_and_valid_labels(field):
    assert len(field) >= 150
    ids = [r["id"] for r in field]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"field-\d{3}", i) for i in ids)
    for record in field:
        assert set(record) == {"id", "ticket", "category", "urgency", "reply", "half"}, record["id"]
        assert record["ticket"].strip() and record["reply"].strip(), record["id"]
        for name, allowed in SUPPORT_TICKETS.label_values.items():
            assert record[name] in allowed, (record["id"], name, record[name])


@pytest.mark.unit
def test_the_field_set_is_split_into_halves_balanced_per_label_pair(field):
    """Each (category, urgency) pair is split as evenly as it can be: the dev half chooses, the test half reports."""
    assert check_halves(field, field_test_path())
    per_pair = Counter((r["category"], r["urgency"], r["half"]) for r in field)
    for category, urgency in {(r["category"], r["urgency"]) for r in field}:
        assert abs(per_pair[category, urgency, "dev"] - per_pair[category, urgency, "test"]) <= 1, (category, urgency)
    sizes = Counter(r["half"] for r in field)
    assert abs(sizes["dev"] - sizes["test"]) <= 2 and sizes["test"] >= 100, sizes


@pytest.mark.unit
def test_a_file_without_halves_is_all_test_and_a_half_marked_file_is_refused(tmp_path):
    records = [{"id": f"t{i}", "category": "billing", "urgency": "low"} for i in range(4)]
    assert field_half(records, "test") == records and field_half(records, "dev") == []
    path = tmp_path / "field.jsonl"
    write_jsonl([records[0] | {"half": "dev"}, *records[1:]], path)
    with pytest.raises(DataError, match=r"field.jsonl, line 2, field 'half': missing, while 1 of 4"):
        field_half(read_records(path), "test", path)
    write_jsonl([records[0] | {"half": "devel"}, *records[1:]], path)
    with pytest.raises(DataError, match=r"line 1, field 'half': 'devel' is not one of dev, test"):
        field_half(read_records(path), "dev", path)


@pytest.mark.unit
def test_new_records_join_the_halves_without_moving_the_old_ones():
    old = assign_halves(
        [{"id": f"o{i}", "category": "billing", "urgency": "low"} for i in range(5)], SUPPORT_TICKETS, seed=1
    )
    assert Counter(r["half"] for r in old) in (Counter(dev=3, test=2), Counter(dev=2, test=3))
    new = [{"id": f"n{i}", "category": "billing", "urgency": "low"} for i in range(3)]
    both = assign_halves(old + new, SUPPORT_TICKETS, seed=1)
    assert both[:5] == old
    assert abs(Counter(r["half"] for r in both)["dev"] - 4) == 0  # 8 records of one pair: 4 and 4


@pytest.mark.unit
def test_field_set_covers_every_label(field):
    categories = Counter(r["category"] for r in field)
    urgencies = Counter(r["urgency"] for r in field)
    assert all(categories[c] >= 20 for c in SUPPORT_TICKETS.label_values["category"]), categories
    assert all(urgencies[u] >= 40 for u in SUPPORT_TICKETS.label_values["urgency"]), urgencies


@pytest.mark.unit
def test_curation_keeps_every_field_ticket_unchanged(field):
    result = curate(field, SUPPORT_TICKETS, source=str(field_test_path()))
    assert result.records == field


@pytest.mark.unit
def test_no_near_duplicates_within_the_field_set(field):
    assert near_duplicate_groups([r["ticket"] for r in field], threshold=NEAR) == []


@pytest.mark.unit
def test_field_set_shares_no_ticket_with_the_sample_or_the_generator(field, sample_tickets, generated_tickets):
    texts = [r["ticket"] for r in field]
    for name, others in (("sample", sample_tickets), ("generator", generated_tickets)):
        keys = {dedup_key(t) for t in others}
        assert [t for t in texts if dedup_key(t) in keys] == [], f"exact duplicates of the {name}"
        assert near_pairs(texts, others) == [], f"near duplicates of the {name}"


@pytest.mark.unit
def test_curated_splits_never_contain_the_field_set(field):
    splits = curated_splits(read_jsonl(sample_path("support_tickets")), SUPPORT_TICKETS)
    ids = {r["id"] for r in field}
    keys = {dedup_key(r["ticket"]) for r in field}
    for name, records in splits.items():
        assert not ids & {r["id"] for r in records}, name
        assert not keys & {dedup_key(r["ticket"]) for r in records}, name


@pytest.mark.unit
def test_field_set_is_more_diverse_than_generated_tickets(field, generated_tickets):
    """Same number of tickets on both sides: the share of distinct word 4-grams falls as a set grows."""
    field_share = four_gram_share([r["ticket"] for r in field])
    generated_share = four_gram_share(generated_tickets[: len(field)])
    print(f"distinct word 4-gram share: field {field_share:.3f}, generated {generated_share:.3f}")
    assert field_share >= generated_share


def _result(values: dict[str, tuple[float, float, float]], examples: int):
    return replace(result(values), examples=examples)


@pytest.mark.unit
def test_the_spec_names_the_field_test_set_and_lesson_05_compares_both_sets(tmp_path):
    from ftlib.core.tasks import load_task_spec, save_task_spec
    from ftlib.lessons import plots
    from ftlib.measure import evaluate

    assert SUPPORT_TICKETS.field_test_file == field_test_path()
    assert load_task_spec(save_task_spec(SUPPORT_TICKETS, tmp_path / "t.yaml")).field_test_file == field_test_path()
    both = {
        "generated test": {"LoRA": _result({"urgency_accuracy": (0.86, 0.81, 0.91)}, 200)},
        "field test": {"LoRA": _result({"urgency_accuracy": (0.68, 0.60, 0.77)}, 172)},
    }
    (row,) = evaluate.set_comparison(both, ["urgency_accuracy"])
    assert row["generated test (n=200)"] == 0.86 and row["field test (n=172)"] == 0.68
    assert row["field test 95% CI"] == "[0.60, 0.77]" and row["gap"] == pytest.approx(-0.18)
    assert row["intervals overlap"] is False
    plots.plot_set_comparison(both, ["urgency_accuracy"], tmp_path / "sets.png")
    assert (tmp_path / "sets.png").stat().st_size > 0


@pytest.mark.unit
def test_a_spec_without_a_field_test_set_says_so():
    from ftlib.core.tasks import LISTINGS

    assert LISTINGS.field_test_file is None
    with pytest.raises(FileNotFoundError, match="field_test: missing"):
        field_test_path("listings")
