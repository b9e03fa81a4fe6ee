import csv
import html
import json
import math
from dataclasses import replace

import pytest
import scored

from ftlib.core.tasks import LISTINGS
from ftlib.data.records import DataError
from ftlib.measure import evaluate, review, stats
from ftlib.measure.evaluate import Prediction
from ftlib.measure.stats import Estimate

pytestmark = pytest.mark.unit

RUNS = ("base (zero-shot)", "base (few-shot)", "LoRA")


def make_results(tickets, task, n=12):
    """Three runs on the same ``n`` tickets: LoRA always right, the base runs right on every third example."""
    records = [
        dict(tickets[i % len(tickets)], id=f"e{i}", ticket=f"{tickets[i % len(tickets)]['ticket']} #{i}")
        for i in range(n)
    ]
    results = {}
    for run in RUNS:
        predictions = []
        for i, record in enumerate(records):
            right = run == "LoRA" or i % 3 == 0
            category = record["category"] if right else "cancellation"
            text = json.dumps({"category": category, "urgency": record["urgency"], "reply": f"{run} says hi"})
            predictions.append(
                Prediction(
                    record["id"],
                    task.input_text(record),
                    {f: record[f] for f in task.answer_fields},
                    text,
                    evaluate.per_example_scores(text, record, task),
                )
            )
        results[run] = scored.result(predictions=predictions)
    return results


def read_sheet(path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def write_sheet(path, rows):
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_review_sheet_is_blinded_and_keyed(tmp_path, tickets, task):
    results = make_results(tickets, task)
    sheet = review.export_review_sheet(results, tmp_path / "review.csv", n=8, seed=0)
    rows = read_sheet(sheet)
    assert list(rows[0]) == list(review.SHEET_COLUMNS)
    assert len(rows) == 8 * len(RUNS) and {row["item"] for row in rows} == {str(i) for i in range(1, 9)}
    assert all(row["rating"] == "" and row["note"] == "" for row in rows)
    key = review.load_review_key(tmp_path / "review.key.json")
    assert review.key_path(sheet) == tmp_path / "review.key.json" and set(key) == {row["output_id"] for row in rows}
    for row in rows:
        place = key[row["output_id"]]
        prediction = results[place["run"]].predictions[place["example"]]
        assert row["output"] == prediction.prediction and row["example_id"] == place["example_id"] == prediction.id
        assert row["reference"] == evaluate.reference_text(prediction.reference)
        assert not any(word in row["output_id"].lower() for word in ("base", "lora", "shot"))
    orders = {tuple(key[row["output_id"]]["run"] for row in rows if row["item"] == str(item)) for item in range(1, 9)}
    assert len(orders) > 1  # each example's answers in their own shuffled order
    assert read_sheet(review.export_review_sheet(results, tmp_path / "again.csv", n=8, seed=0)) == rows
    other = read_sheet(review.export_review_sheet(results, tmp_path / "other.csv", n=8, seed=1))
    assert {row["example_id"] for row in other} != {row["example_id"] for row in rows}
    assert len(read_sheet(review.export_review_sheet(results, tmp_path / "all.csv", n=None))) == 12 * len(RUNS)


def test_a_sheet_with_ratings_is_never_overwritten_unless_asked(tmp_path, tickets, task):
    results = make_results(tickets, task)
    path = review.export_review_sheet(results, tmp_path / "review.csv", n=2)
    review.export_review_sheet(results, path, n=3)  # nothing rated yet: replaced freely
    rows = read_sheet(path)
    assert len(rows) == 3 * len(RUNS)
    rows[4]["note"] = "reply is rude"
    write_sheet(path, rows)
    with pytest.raises(FileExistsError, match=f"{path} already holds ratings or notes"):
        review.export_review_sheet(results, path, n=3)
    assert read_sheet(path) == rows
    review.export_review_sheet(results, path, n=3, overwrite=True)
    assert not review.sheet_has_ratings(path)


def test_ratings_filled_in_a_spreadsheet_are_loaded(tmp_path, tickets, task):
    path = review.export_review_sheet(make_results(tickets, task), tmp_path / "review.csv", n=2)
    rows = read_sheet(path)
    rows[0].update(rating=" Correct ", note="fine")
    rows[2].update(rating="WRONG")
    write_sheet(path, rows)
    ratings = review.load_ratings(path)
    assert ratings == {
        rows[0]["output_id"]: {"rating": "correct", "note": "fine", "rated_at": ""},
        rows[2]["output_id"]: {"rating": "wrong", "note": "", "rated_at": ""},
    }


def test_bad_rows_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "ratings.csv"
    # The first row's note spans two physical lines: the bad row starts on line 4.
    path.write_text('output_id,rating,note\no1,correct,"two\nlines"\no2,good,\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}, line 4, field 'rating': 'good' is not one of correct, partly, wrong"):
        review.load_ratings(path)
    path.write_text("output_id,rating,note\n,wrong,\n")
    with pytest.raises(DataError, match="line 2, field 'output_id': empty"):
        review.load_ratings(path)
    path.write_text("output_id,rating,note\no1,,why?\n")
    with pytest.raises(DataError, match="line 2, field 'rating': a note without a rating"):
        review.load_ratings(path)
    path.write_text("output_id,score\no1,correct\n")
    with pytest.raises(DataError, match="line 1, field 'rating': missing column"):
        review.load_ratings(path)
    with pytest.raises(DataError, match="missing.csv: file not found"):
        review.load_ratings(tmp_path / "missing.csv")


def test_ratings_store_saves_every_rating_atomically_and_merges(tmp_path):
    path = tmp_path / "ratings.csv"
    first, second = review.RatingsStore(path), review.RatingsStore(path)  # two panels on one file
    first.rate("o1", "correct", "  good  ")
    assert review.load_ratings(path)["o1"]["rating"] == "correct"  # on disk at once
    second.rate("o2", "partly")  # opened before o1 was rated: must not drop it
    first.rate("o1", "wrong", "missed the outage")  # a new rating replaces the old one
    ratings = review.load_ratings(path)
    assert {k: (v["rating"], v["note"]) for k, v in ratings.items()} == {
        "o1": ("wrong", "missed the outage"),
        "o2": ("partly", ""),
    }
    assert all(v["rated_at"] for v in ratings.values())
    assert review.RatingsStore(path).ratings == ratings  # re-opening loses nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv"]  # no temporary files left
    with pytest.raises(ValueError, match="rating 'great' is not one of correct, partly, wrong"):
        first.rate("o3", "great")


def test_review_session_rates_moves_and_resumes(tmp_path, tickets, task):
    sheet = review.export_review_sheet(make_results(tickets, task), tmp_path / "review.csv", n=2)
    ratings_path = tmp_path / "ratings.csv"
    session = review.ReviewSession(sheet, ratings_path)
    assert session.position == 0 and session.rated == 0 and len(session.rows) == 2 * len(RUNS)
    first = session.current["output_id"]
    session.rate("partly", "reply too long")
    assert session.position == 1 and session.rated == 1
    assert review.load_ratings(ratings_path)[first]["note"] == "reply too long"
    session.previous()
    assert session.current_rating["rating"] == "partly"
    session.previous()
    assert session.position == 0
    for _ in range(10):
        session.next()
    assert session.position == len(session.rows) - 1
    assert review.ReviewSession(sheet, ratings_path).position == 1  # resumes at the first unrated answer


def test_review_panel_buttons_write_ratings(tmp_path, tickets, task):
    import ipywidgets as widgets

    sheet = review.export_review_sheet(make_results(tickets, task), tmp_path / "review.csv", n=1)
    ratings_path = tmp_path / "ratings.csv"
    panel = review.review_panel(sheet, ratings_path)

    def walk(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    parts = list(walk(panel))
    buttons = {w.description: w for w in parts if isinstance(w, widgets.Button)}
    note = next(w for w in parts if isinstance(w, widgets.Textarea))
    rows = read_sheet(sheet)
    assert html.escape(rows[0]["output"]) in "".join(w.value for w in parts if isinstance(w, widgets.HTML))
    note.value = "wrong category"
    buttons["wrong"].click()
    buttons["correct"].click()
    assert note.value == ""  # the next answer has no note yet
    buttons["◀ prev"].click()
    assert note.value == ""  # the second answer was rated without a note
    buttons["◀ prev"].click()
    assert note.value == "wrong category"
    ratings = review.load_ratings(ratings_path)
    assert {k: v["rating"] for k, v in ratings.items()} == {
        rows[0]["output_id"]: "wrong",
        rows[1]["output_id"]: "correct",
    }


def test_interactive_frontend_needs_a_kernel_that_accepts_input(monkeypatch):
    import IPython

    assert review.interactive_frontend() is False  # pytest: no kernel

    class Shell:
        def __init__(self, allow_stdin):
            self.kernel = type("Kernel", (), {"_allow_stdin": allow_stdin})()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell(True))
    assert review.interactive_frontend() is True  # Jupyter Lab, Notebook, VS Code
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell(False))
    assert review.interactive_frontend() is False  # papermill, nbval


def test_aggregate_ratings_counts_and_scores_per_run():
    key = {f"a{i}": {"run": "A", "example": i} for i in range(4)} | {"b0": {"run": "B", "example": 0}}
    ratings = {
        "a0": {"rating": "correct"},
        "a1": {"rating": "correct"},
        "a2": {"rating": "partly"},
        "a3": {"rating": "wrong"},
        "old": {"rating": "wrong"},
    }  # "old": not on this sheet, left out
    summary = review.aggregate_ratings(ratings, key)
    assert {k: summary["A"][k] for k in ("rated", "correct", "partly", "wrong")} == {
        "rated": 4,
        "correct": 2,
        "partly": 1,
        "wrong": 1,
    }
    score = summary["A"]["score"]
    assert score.value == pytest.approx(0.625) and 0 <= score.low <= 0.625 <= score.high <= 1
    assert (score.low, score.high) == stats.bootstrap_interval([1, 1, 0.5, 0])
    assert summary["B"]["rated"] == 0 and math.isnan(summary["B"]["score"].value)
    with pytest.raises(ValueError, match="none of the 1 ratings is of an answer in this key"):
        review.aggregate_ratings({"old": {"rating": "wrong"}}, key)


def test_cohens_kappa_on_a_hand_computed_table():
    human = [True, True, True, False, False, False, True, False, True, True]
    metric = [True, True, False, False, False, True, True, False, True, False]
    # 4 both yes, 3 both no: p_o = 0.7; yes rates 0.6 and 0.5: p_e = 0.6*0.5 + 0.4*0.5 = 0.5 -> (0.7-0.5)/(1-0.5)
    assert review.cohens_kappa(human, metric) == pytest.approx(0.4)
    assert review.cohens_kappa(human, human) == pytest.approx(1.0)
    assert math.isnan(review.cohens_kappa([True] * 3, [True] * 3)) and math.isnan(review.cohens_kappa([], []))


def test_rating_agreement_between_people_and_the_metrics(tmp_path, tickets, task):
    results = make_results(tickets, task, n=10)
    review.export_review_sheet(results, tmp_path / "review.csv", n=None)
    key = review.load_review_key(tmp_path / "review.key.json")
    ids = {(place["run"], place["example"]): identifier for identifier, place in key.items()}
    # The base run is right (by the metrics) on examples 0, 3, 6, 9; people say correct on 0, 1, 2, 6, 8, 9.
    # Pairs: both yes 0, 6, 9; person only 1, 2, 8; metrics only 3; neither 4, 5, 7 -> p_o = 0.6,
    # p_e = 0.6*0.4 + 0.4*0.6 = 0.48, kappa = 0.12 / 0.52.
    people = {
        0: "correct",
        1: "correct",
        2: "correct",
        3: "partly",
        4: "wrong",
        5: "partly",
        6: "correct",
        7: "wrong",
        8: "correct",
        9: "correct",
    }
    ratings = {ids["base (zero-shot)", i]: {"rating": rating, "note": ""} for i, rating in people.items()}
    agreement = review.rating_agreement(ratings, key, results, task)
    assert {
        k: getattr(agreement, k)
        for k in ("compared", "both_correct", "human_only", "automatic_only", "neither", "stale")
    } == {"compared": 10, "both_correct": 3, "human_only": 3, "automatic_only": 1, "neither": 3, "stale": 0}
    assert agreement.agreement == pytest.approx(0.6) and agreement.kappa == pytest.approx(0.12 / 0.52)
    assert agreement.rule == "valid JSON and every label right (category, urgency)"
    assert "60% agree" in agreement.sentence() and "only people 3" in agreement.sentence()
    answers = results["base (zero-shot)"].predictions
    answers[4] = replace(answers[4], prediction="a new answer")  # re-generated since the export
    assert review.rating_agreement(ratings, key, results, task).stale == 1


def test_automatic_judgement_of_text_answers_uses_the_rouge_threshold():
    assert review.automatic_judgement({"attribute_coverage": 1.0, "description_rougeL": 0.6}, LISTINGS) is True
    assert review.automatic_judgement({"description_rougeL": 0.3}, LISTINGS) is False
    assert review.automatic_judgement({"description_rougeL": 0.3}, LISTINGS, rouge_threshold=0.25) is True
    assert review.automatic_judgement({"attribute_coverage": 1.0}, LISTINGS) is None  # no reference to compare


def test_human_vs_automatic_rows():
    human = {"LoRA": {"rated": 2, "correct": 1, "partly": 1, "wrong": 0, "score": Estimate(0.75, 0.5, 1.0)}}
    results = {
        "base": scored.result({"json_valid": (0.1234, 0.1, 0.2)}),
        "LoRA": scored.result({"json_valid": (0.98, 0.9, 1.0)}),
    }
    rows = review.human_vs_automatic(human, results, ["json_valid"])
    assert rows[1] == {
        "run": "LoRA",
        "rated": 2,
        "correct": 1,
        "partly": 1,
        "wrong": 0,
        "human score": 0.75,
        "interval": "[0.50, 1.00]",
        "json_valid": 0.98,
    }
    assert rows[0]["rated"] == 0 and rows[0]["interval"] == "" and rows[0]["json_valid"] == 0.123
