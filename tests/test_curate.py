import json

import pytest

from ftlib.core.tasks import LISTINGS, SUPPORT_TICKETS
from ftlib.data import cleaning, curate, dedup
from ftlib.data import records as data
from ftlib.engine.profiles import sample_path


@pytest.fixture(scope="module")
def tokenizer():
    from ftlib.engine.models import load_tokenizer

    return load_tokenizer()


def curated(dataset, task, tokenizer):
    raw = data.read_jsonl(sample_path(dataset))
    manifest = json.loads(sample_path(dataset).with_suffix(".manifest.json").read_text())
    return raw, curate.curate(raw, task, tokenizer, 256, source=f"{dataset}.jsonl"), manifest


@pytest.mark.integration
@pytest.mark.parametrize("dataset, task", [("support_tickets", SUPPORT_TICKETS), ("listings", LISTINGS)])
def test_pipeline_meets_precision_and_recall_per_flaw_class(dataset, task, tokenizer):
    raw, result, manifest = curated(dataset, task, tokenizer)
    scores = curate.measure_against_manifest(result, manifest)
    measured = {name: s for name, s in scores.flaws.items() if s.support}
    assert len(measured) >= (11 if dataset == "support_tickets" else 5)
    assert [row["flaw"] for row in scores.rows()] == list(measured)
    for name, s in measured.items():
        assert s.recall >= 0.95, f"{name} recall {s.recall:.3f}"
        assert s.precision >= 0.95, f"{name} precision {s.precision:.3f}"
    if dataset == "support_tickets":
        assert scores.flaws["pii"].recall >= 0.99
        assert scores.pii_strings.recall >= 0.99, scores.pii_strings.leaked


@pytest.mark.integration
def test_other_layouts_are_normalized_not_dropped_and_raw_is_untouched(tokenizer):
    raw, result, manifest = curated("support_tickets", SUPPORT_TICKETS, tokenizer)
    layout_ids = {rid for rid, f in manifest["flaws"].items() if f["class"] == "layout"}
    kept = {r["id"]: r for r in result.records}
    assert layout_ids <= {o.id for o in result.outcomes if "layout" in o.changes}
    survivors = layout_ids & set(kept)
    assert len(survivors) > 0.9 * len(layout_ids)
    assert all(set(kept[i]) == {"id", "ticket", "category", "urgency", "reply"} for i in survivors)
    assert raw == data.read_jsonl(sample_path("support_tickets"))  # the pipeline copies, never edits


@pytest.mark.parametrize(
    "text, kinds",
    [
        ("mail me at jane.doe+isp@mail.example.co.uk now", {"EMAIL"}),
        ("call (555) 123-4567 or +44 7700 900123", {"PHONE"}),
        ("my number is 07700 900123", {"PHONE"}),
        ("card 4539 1488 0343 6467 was charged", {"CARD"}),
        ("card 4539-1488-0343-6467", {"CARD"}),
        ("I live at 221 Baker Street, Apt 4", {"ADDRESS"}),
        ("Regards, Sean O'Brien", {"NAME"}),
        ("My name is Ana Lopez-Garcia and", {"NAME"}),
    ],
)
@pytest.mark.unit
def test_pii_is_replaced_by_typed_placeholders(text, kinds):
    scrubbed, counts = cleaning.scrub_pii(text)
    assert set(counts) == kinds
    assert all(f"<{kind}>" in scrubbed for kind in kinds)


@pytest.mark.parametrize(
    "text",
    [
        "charged $180.50 twice, account number 32156634",
        "log [2026-11-05 13:45] WAN link state down, attempt 3 of 10",
        "card 4539 1488 0343 6468 is not a valid number",  # fails the Luhn check
        "I'm paying for 900 Mbps but getting 12 Mbps since 6am",
        "This is the third time I'm reporting this. Thanks, I appreciate it",
        "moving on the 15th to 3 Park",
    ],
)
@pytest.mark.unit
def test_pii_scrubber_leaves_ordinary_text_alone(text):
    assert cleaning.scrub_pii(text) == (text, {})


@pytest.mark.unit
def test_luhn():
    assert cleaning.luhn_valid("4539148803436467") and not cleaning.luhn_valid("4539148803436468")


@pytest.mark.unit
def test_layouts_and_labels_are_normalized(tickets):
    nested = {
        "id": "x",
        "text": "my router is smoking badly",
        "labels": {"category": "Hardware ", "urgency": "URGENT"},
        "response": "Unplug it.",
    }
    result = curate.curate([nested], SUPPORT_TICKETS)
    assert result.records == [
        {
            "id": "x",
            "ticket": "my router is smoking badly",
            "category": "hardware",
            "urgency": "high",
            "reply": "Unplug it.",
        }
    ]
    assert result.outcomes[0].changes == ["layout", "labels"]


@pytest.mark.unit
def test_invalid_label_is_dropped_with_file_line_and_field(tickets):
    bad = dict(tickets[0], urgency="asap")
    result = curate.curate([tickets[1], bad], SUPPORT_TICKETS, source="in.jsonl")
    assert result.outcomes[1].step == "labels"
    assert result.outcomes[1].reason.startswith("in.jsonl, line 2, field 'urgency': 'asap' is not one of")


@pytest.mark.unit
def test_missing_field_is_dropped_with_reason(tickets):
    result = curate.curate([{"ticket": "my internet is down again"}], SUPPORT_TICKETS, source="in.jsonl")
    assert result.outcomes[0].reason == "in.jsonl, line 1, field 'category': missing field"


@pytest.mark.unit
def test_markup_junk_and_language(tickets):
    assert cleaning.strip_markup("<p>Hi&nbsp;there &amp; bye</p>") == ("Hi there & bye", True)
    assert cleaning.strip_markup("no markup here") == ("no markup here", False)
    assert cleaning.is_junk("   ") and cleaning.is_junk("asdf") and cleaning.is_junk("testing 123")
    assert cleaning.is_junk("my internet is down") is None
    assert cleaning.non_english("Hola, mi internet no funciona desde ayer, por favor ayuda")
    assert not cleaning.non_english("Hello, my internet is down since yesterday, please help")


@pytest.mark.unit
def test_near_duplicates_are_grouped_and_distinct_texts_are_not():
    texts = [
        "my router light is blinking red and the wifi keeps dropping all day",
        "my router light is blinking red and the wifi keeps dropping all day long",
        "please cancel my tv package from next month, I am moving abroad",
    ]
    assert dedup.near_duplicate_groups(texts, threshold=0.7) == [[0, 1]]


def _brute_force_groups(texts: list[str], threshold: float) -> list[list[int]]:
    """Connected components of all pairs with exact Jaccard >= threshold (quadratic: small sets only)."""
    parent = list(range(len(texts)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(texts)):
        for j in range(i):
            if dedup.jaccard(texts[i], texts[j]) >= threshold:
                parent[root(i)] = root(j)
    groups = {}
    for i in range(len(texts)):
        groups.setdefault(root(i), []).append(i)
    return sorted(g for g in groups.values() if len(g) > 1)


@pytest.mark.unit
def test_near_duplicate_groups_match_brute_force_all_pairs_jaccard():
    import random

    rng = random.Random(0)
    words = "router wifi bill invoice refund outage slow speed modem cable account password cancel tv phone".split()
    bases = [" ".join(rng.choice(words) for _ in range(30)) + f" order {rng.randrange(10**6)}" for _ in range(40)]
    texts = []
    for base in bases:  # each base, and sometimes variants one or two words away (near-duplicates), or far
        texts.append(base)
        for _ in range(rng.randrange(3)):
            variant = base.split()
            variant[rng.randrange(len(variant))] = rng.choice(words)
            texts.append(" ".join(variant) + rng.choice(["", " please", " thanks"]))
    rng.shuffle(texts)
    expected = _brute_force_groups(texts, 0.7)
    assert expected and sorted(dedup.near_duplicate_groups(texts, threshold=0.7)) == expected
    assert sorted(dedup.near_duplicate_groups(texts, threshold=0.5)) == _brute_force_groups(texts, 0.5)


@pytest.mark.unit
def test_batched_signatures_and_jaccard_equal_minhash_and_jaccard():
    texts = ["my router keeps dropping the wifi", "my router keeps dropping the wifi!", "hi", "", "refund my bill"]
    shingled = dedup._Shingled(texts)
    expected = [dedup.minhash(t).hashvalues for t in texts]
    assert all((row == e).all() for row, e in zip(shingled.signatures(128, chunk=2), expected))
    pairs = [(i, j) for i in range(len(texts)) for j in range(len(texts))]
    assert [shingled.jaccard(i, j) for i, j in pairs] == [dedup.jaccard(texts[i], texts[j]) for i, j in pairs]


@pytest.mark.unit
def test_conflicting_duplicates_majority_wins_and_ties_drop_all(tickets):
    base = tickets[0]
    majority = [dict(base, id="1"), dict(base, id="2"), dict(base, id="3", urgency="low")]
    result = curate.curate(majority, SUPPORT_TICKETS)
    assert [r["id"] for r in result.records] == ["1"]
    assert {o.id: o.step for o in result.outcomes} == {"1": None, "2": "exact_duplicates", "3": "conflicts"}
    tie = curate.curate([dict(base, id="1"), dict(base, id="2", urgency="low")], SUPPORT_TICKETS)
    assert tie.records == [] and all(o.step == "conflicts" for o in tie.outcomes)


@pytest.mark.unit
def test_leakage_check_finds_a_shared_example(tickets):
    splits = {"train": tickets[:2], "val": [tickets[2]], "test": [dict(tickets[0], id="copy")]}
    leaks = curate.leakage(splits, SUPPORT_TICKETS)
    assert len(leaks) == 1 and leaks[0]["splits"] == ["test", "train"]
    assert curate.leakage({"train": tickets[:2], "test": tickets[2:]}, SUPPORT_TICKETS) == []


@pytest.mark.unit
def test_leakage_check_on_listings_compares_descriptions_not_rendered_attributes():
    from ftlib.data.listings import generate_listings

    listings = generate_listings(60, seed=1)
    splits = {"train": listings[:40], "val": listings[40:50], "test": listings[50:]}
    assert curate.leakage(splits, LISTINGS) == []
    splits["test"].append(dict(listings[0], id="again"))
    assert len(curate.leakage(splits, LISTINGS)) == 1


# ---------------------------------------------------------------- each step alone, on hand-made records


def ticket(text: str = "my internet keeps dropping every evening since monday", **fields) -> dict:
    return {"ticket": text, "category": "outage", "urgency": "high", "reply": "Sorry, we are on it."} | fields


@pytest.mark.unit
def test_step_layout_maps_an_alternative_layout_and_keeps_lines():
    nested = {
        "text": "my router is smoking badly",
        "labels": {"category": "hardware", "urgency": "high"},
        "response": "Unplug it.",
    }
    result = curate.step_layout(data.Records([nested, ticket()], [4, 9]), SUPPORT_TICKETS)
    assert result.kept[0] == {
        "ticket": "my router is smoking badly",
        "category": "hardware",
        "urgency": "high",
        "reply": "Unplug it.",
    }
    assert result.kept[1] == ticket() and result.kept.lines == [4, 9]
    assert (result.dropped, result.changed) == ({}, {0})


@pytest.mark.unit
def test_step_labels_respells_variants_and_drops_unknown_labels_without_editing_its_input():
    records = data.Records([ticket(category="Bill"), ticket(urgency="asap"), ticket()], [3, 7, 9])
    result = curate.step_labels(records, SUPPORT_TICKETS, source="in.jsonl")
    assert [r["category"] for r in result.kept] == ["billing", "outage"] and result.kept.lines == [3, 9]
    assert list(result.dropped) == [1] and result.changed == {0}
    assert result.dropped[1].startswith("in.jsonl, line 7, field 'urgency': 'asap' is not one of")
    assert records[0]["category"] == "Bill"


@pytest.mark.unit
def test_a_synonym_of_a_label_outside_the_tasks_set_is_dropped():
    from dataclasses import replace

    fewer = replace(SUPPORT_TICKETS, label_values={**SUPPORT_TICKETS.label_values, "category": ("billing", "outage")})
    result = curate.step_labels([ticket(category="Bill"), ticket(category="speed")], fewer, source="in.jsonl")
    assert [r["category"] for r in result.kept] == ["billing"]
    assert result.dropped == {1: "in.jsonl, line 2, field 'category': 'speed' is not one of ['billing', 'outage']"}


@pytest.mark.unit
def test_step_schema_drops_a_record_missing_a_field():
    result = curate.step_schema([ticket(), {"ticket": "my internet is down again"}], SUPPORT_TICKETS, "in.jsonl")
    assert result.kept == [ticket()]
    assert result.dropped == {1: "in.jsonl, line 2, field 'category': missing field"}


@pytest.mark.unit
def test_step_markup_cleans_text_fields_only_where_there_is_markup():
    result = curate.step_markup([ticket(), ticket(text="<p>my wifi &amp; tv are down</p> since noon")], SUPPORT_TICKETS)
    assert [r["ticket"] for r in result.kept] == [ticket()["ticket"], "my wifi & tv are down since noon"]
    assert (result.dropped, result.changed) == ({}, {1})


@pytest.mark.unit
def test_step_quality_drops_placeholder_text():
    result = curate.step_quality([ticket(text="asdf"), ticket()], SUPPORT_TICKETS)
    assert result.kept == [ticket()]
    assert result.dropped == {0: "<records>, line 1, field 'ticket': placeholder text 'asdf'"}


@pytest.mark.unit
def test_step_language_drops_another_language_where_the_task_filters():
    spanish = ticket(text="Hola, mi internet no funciona desde ayer, por favor ayuda")
    result = curate.step_language([ticket(), spanish], SUPPORT_TICKETS)
    assert result.kept == [ticket()] and result.dropped == {1: "<records>, line 2, field 'ticket': not English"}


@pytest.mark.unit
def test_step_pii_replaces_and_counts_placeholders():
    leaky = ticket(text="call me on (555) 123-4567 about it, my router keeps failing")
    result = curate.step_pii([leaky, ticket()], SUPPORT_TICKETS)
    assert result.kept[0]["ticket"] == "call me on <PHONE> about it, my router keeps failing"
    assert result.changed == {0} and result.pii_counts == {"PHONE": 1} and not result.dropped
    assert "(555)" in leaky["ticket"]


@pytest.mark.unit
def test_step_duplicates_finds_exact_near_and_conflicting_duplicates():
    text = "my router light is blinking red and the wifi keeps dropping all day"
    records = [
        ticket(text=text),
        ticket(text=text.upper() + "!"),
        ticket(text=text + " long"),
        ticket(text="please cancel my tv package from next month, I am moving abroad"),
        ticket(text="please cancel my tv package from next month, I am moving abroad", urgency="low"),
    ]
    found = curate.step_duplicates(records, SUPPORT_TICKETS, source="in.jsonl")
    assert found.exact == {1: "in.jsonl, line 2: exact duplicate of line 1"}
    assert found.near == {2: "in.jsonl, line 3: near duplicate of line 1"}
    assert set(found.conflicts) == {3, 4} and "no majority" in found.conflicts[3]


@pytest.mark.unit
def test_step_length_measures_every_record_and_drops_the_long_ones(tokenizer):
    records = [ticket(), ticket(text=" ".join(["my connection drops"] * 60))]
    measured = curate.step_length(records, SUPPORT_TICKETS, tokenizer, max_length=10**6)
    short, long = measured.token_lengths
    assert short < long and measured.kept == records and not measured.dropped
    result = curate.step_length(records, SUPPORT_TICKETS, tokenizer, max_length=short)
    assert result.kept == records[:1] and result.token_lengths == [short, long]
    assert result.dropped == {1: f"<records>, line 2: {long} tokens > max_length {short}"}


@pytest.mark.unit
def test_name_cues_are_the_name_patterns_lookbehinds():
    import re

    lookbehinds = re.findall(r"\(\?<=(.*?)\)(?=\||\))", cleaning.NAME.pattern.split("){")[0])
    assert sorted(cue.replace("\\b", "").replace("\\n", "\n") for cue in lookbehinds) == sorted(cleaning.NAME_CUES)
