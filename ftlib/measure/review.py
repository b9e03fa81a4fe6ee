"""Human review of model answers: a blinded sheet, a ratings store, a rating panel, and what the ratings say.

The loop: ``export_review_sheet`` writes a CSV of answers labelled only by opaque ids (the key to the runs is a
separate file); reviewers rate them in ``review_panel`` (or fill the sheet's ``rating`` and ``note`` columns in a
spreadsheet); ``aggregate_ratings`` and ``rating_agreement`` turn the ratings into a score per run and measure how
well the automatic metrics agree with people.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ftlib.core.fileio import write_csv, write_json
from ftlib.core.tasks import Task
from ftlib.data.records import DataError
from ftlib.measure.evaluate import EvaluationResult, Prediction, common_examples, reference_text
from ftlib.measure.stats import Estimate

RATING_SCORES = {"correct": 1.0, "partly": 0.5, "wrong": 0.0}
SHEET_COLUMNS = ("item", "output_id", "example_id", "input", "reference", "output", "rating", "note")
RATINGS_COLUMNS = ("output_id", "rating", "note", "rated_at")
# Excel reads UTF-8 CSV correctly only with a byte-order mark; Python, LibreOffice and Google Sheets accept it.
CSV_ENCODING = "utf-8-sig"


def key_path(sheet_path: str | Path) -> Path:
    """The key file of a review sheet: ``<name>.key.json`` next to it."""
    sheet_path = Path(sheet_path)
    return sheet_path.with_name(f"{sheet_path.stem}.key.json")


def output_id(index: int, prediction: Prediction, run: str) -> str:
    """The opaque id of one run's answer to one example: a hash of the example, the run and the answer.

    The same answer keeps its id when the sheet is exported again; a changed answer gets a new one, so a
    rating never moves to an answer it was not given for.
    """
    content = json.dumps([index, prediction.id, prediction.input, run, prediction.prediction], ensure_ascii=False)
    return "o" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:10]


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as ``(line where the row starts, {column: value})``; blank rows are skipped.

    Raises:
        DataError: the file is missing, not UTF-8, not CSV, lacks a ``required`` column, or a row has more
            filled cells than the header has columns.
    """
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    rows = []
    try:
        with open(path, encoding=CSV_ENCODING, newline="") as handle:
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            if not header:
                return []
            for column in required:
                if column not in header:
                    raise DataError(path, 1, column, f"missing column (the header has: {', '.join(header)})")
            start = reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    if any(cell.strip() for cell in cells[len(header) :]):
                        raise DataError(path, start, None, f"{len(cells)} cells for {len(header)} columns")
                    rows.append((start, dict(zip(header, cells + [""] * (len(header) - len(cells))))))
                start = reader.line_num + 1
    except UnicodeDecodeError:
        raise DataError(path, None, None, "not valid UTF-8; re-save the file as UTF-8 CSV") from None
    except csv.Error as error:
        raise DataError(path, reader.line_num, None, f"not valid CSV ({error})") from None
    return rows


def read_review_sheet(path: str | Path) -> list[dict]:
    """The rows of a review sheet, each with its ``line`` in the file.

    Raises:
        DataError: the file is missing, lacks a column the panel shows, has a row without an output id, or
            holds no rows.
    """
    path = Path(path)
    rows = []
    for line, row in _read_csv(path, ("output_id", "input", "reference", "output")):
        if not row["output_id"].strip():
            raise DataError(path, line, "output_id", "empty: every answer on the sheet needs its id")
        rows.append({column: row.get(column, "") for column in SHEET_COLUMNS} | {"line": line})
    if not rows:
        raise DataError(path, None, None, "the sheet holds no rows")
    return rows


def sheet_has_ratings(path: str | Path) -> bool:
    """Whether a review sheet exists and a reviewer has filled in a rating or a note on it."""
    path = Path(path)
    if not path.exists():
        return False
    return any(row.get("rating", "").strip() or row.get("note", "").strip() for _, row in _read_csv(path, ()))


def export_review_sheet(
    results: dict[str, EvaluationResult], path: str | Path, n: int | None = 20, seed: int = 0, overwrite: bool = False
) -> Path:
    """A blinded review sheet (CSV) of ``n`` test examples with every run's answer, and its key file.

    One row per (example, answer): ``item`` (the example's number on the sheet), ``output_id`` (opaque),
    ``example_id``, ``input``, ``reference``, ``output``, and empty ``rating`` (correct, partly or wrong) and
    ``note`` columns, to fill in with ``review_panel`` or in a spreadsheet. The examples are a seeded random
    sample, kept in test-set order; each example's answers are shuffled, so neither their order nor their ids
    tell which run wrote them. The key, ``<name>.key.json`` next to the sheet, maps each output id to its run
    and example: keep it away from the reviewers.

    Args:
        results: run name -> ``evaluate_model`` result, all on the same examples.
        n: examples on the sheet (all of them when None or more than there are).
        overwrite: replace a sheet that already holds ratings or notes.

    Raises:
        FileExistsError: the sheet holds ratings or notes and ``overwrite`` is False.
        ValueError: there are no runs, or they were not scored on the same examples.
    """
    path = Path(path)
    if not overwrite and sheet_has_ratings(path):
        raise FileExistsError(
            f"{path} already holds ratings or notes, so it was not overwritten: rate on it, "
            "move it away, or pass overwrite=True"
        )
    if not results:
        raise ValueError("no runs to put on a review sheet")
    examples = common_examples(results)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(examples)), len(examples) if n is None else min(n, len(examples))))
    rows, key = [], {}
    for item, index in enumerate(chosen, start=1):
        example = examples[index]
        runs = list(results)
        rng.shuffle(runs)
        for run in runs:
            prediction = results[run].predictions[index]
            identifier = output_id(index, prediction, run)
            rows.append(
                {
                    "item": item,
                    "output_id": identifier,
                    "example_id": example.id or "",
                    "input": example.input,
                    "reference": reference_text(example.reference),
                    "output": prediction.prediction,
                    "rating": "",
                    "note": "",
                }
            )
            key[identifier] = {"run": run, "example": index, "example_id": example.id}
    write_csv(rows, SHEET_COLUMNS, path, CSV_ENCODING)
    write_json({"sheet": path.name, "seed": seed, "outputs": key}, key_path(path))
    return path


def load_review_key(path: str | Path) -> dict[str, dict]:
    """A sheet's key: ``{output_id: {"run", "example", "example_id"}}``.

    Raises:
        DataError: the file is missing, not JSON, or not a key written by ``export_review_sheet``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "key file not found: export the review sheet first")
    try:
        outputs = json.loads(path.read_text(encoding="utf-8")).get("outputs")
    except (json.JSONDecodeError, AttributeError):
        raise DataError(path, None, None, "not a review key (a JSON object with 'outputs')") from None
    if not isinstance(outputs, dict) or not all(
        isinstance(v, dict) and {"run", "example"} <= set(v) for v in outputs.values()
    ):
        raise DataError(path, None, "outputs", "expected {output_id: {run, example, example_id}}")
    return outputs


def load_ratings(*paths: str | Path) -> dict[str, dict]:
    """Ratings from ratings files or filled-in review sheets, merged: ``{output_id: {rating, note, rated_at}}``.

    Any CSV with ``output_id`` and ``rating`` columns will do (``note`` and ``rated_at`` are optional); ratings
    are read case-insensitively. Rows without a rating or a note are unrated and skipped. For an output rated
    twice, the later row, or the later file, wins.

    Raises:
        DataError: a file is missing or lacks a column, or a row has no output id, a rating other than
            correct, partly or wrong, or a note without a rating; the message names the file, line and field.
    """
    ratings: dict[str, dict] = {}
    for path in map(Path, paths):
        for line, row in _read_csv(path, ("output_id", "rating")):
            rating, note = row["rating"].strip().lower(), row.get("note", "").strip()
            if not rating and not note:
                continue
            if not rating:
                raise DataError(path, line, "rating", "a note without a rating: add correct, partly or wrong")
            if rating not in RATING_SCORES:
                raise DataError(path, line, "rating", f"{row['rating']!r} is not one of {', '.join(RATING_SCORES)}")
            identifier = row["output_id"].strip()
            if not identifier:
                raise DataError(path, line, "output_id", "empty: a rating needs the id of the answer it rates")
            ratings[identifier] = {"rating": rating, "note": note, "rated_at": row.get("rated_at", "").strip()}
    return ratings


class RatingsStore:
    """Ratings in a CSV file (``RATINGS_COLUMNS``), saved in full on every rating.

    Each save re-reads the file and merges into it, writes a temporary file and renames it over the old one:
    a crash never leaves half a file, and ratings another panel wrote meanwhile are kept.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ratings = load_ratings(self.path) if self.path.exists() else {}

    def rate(self, output_id: str, rating: str, note: str = "") -> dict:
        """Record a rating of one answer (replacing an earlier one) and save the file at once.

        Raises:
            ValueError: ``rating`` is not correct, partly or wrong, or ``output_id`` is empty.
        """
        rating = rating.strip().lower()
        if rating not in RATING_SCORES:
            raise ValueError(f"rating {rating!r} is not one of {', '.join(RATING_SCORES)}")
        if not output_id:
            raise ValueError("a rating needs the id of the answer it rates")
        merged = load_ratings(self.path) if self.path.exists() else {}
        merged[output_id] = {
            "rating": rating,
            "note": note.strip(),
            "rated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_csv(
            [{"output_id": identifier, **entry} for identifier, entry in merged.items()], RATINGS_COLUMNS, self.path
        )
        self.ratings = merged
        return merged[output_id]


class ReviewSession:
    """What the review panel shows and does, without widgets: the sheet's rows, a position, the ratings store.

    It starts at the first answer not rated yet; ``rate`` saves a rating and moves on.
    """

    def __init__(self, sheet_path: str | Path, ratings_path: str | Path):
        self.rows = read_review_sheet(sheet_path)
        self.store = RatingsStore(ratings_path)
        unrated = [i for i, row in enumerate(self.rows) if row["output_id"] not in self.store.ratings]
        self.position = unrated[0] if unrated else 0

    @property
    def current(self) -> dict:
        return self.rows[self.position]

    @property
    def current_rating(self) -> dict | None:
        return self.store.ratings.get(self.current["output_id"])

    @property
    def rated(self) -> int:
        """How many of the sheet's answers have a rating."""
        return sum(row["output_id"] in self.store.ratings for row in self.rows)

    def rate(self, rating: str, note: str = "") -> None:
        """Rate the current answer (written to the ratings file at once), then show the next one."""
        self.store.rate(self.current["output_id"], rating, note)
        self.next()

    def next(self) -> None:
        self.position = min(self.position + 1, len(self.rows) - 1)

    def previous(self) -> None:
        self.position = max(self.position - 1, 0)


def review_panel(sheet_path: str | Path, ratings_path: str | Path):
    """An ipywidgets panel to rate a review sheet's answers one by one (the logic is ``ReviewSession``).

    It shows the input, the reference and the answer; the correct, partly and wrong buttons save the rating,
    with the note typed in the box, to ``ratings_path`` at once and move on; prev and next move without rating.

    Returns:
        The panel: make it a cell's last expression, or ``display`` it.
    """
    import ipywidgets as widgets

    session = ReviewSession(sheet_path, ratings_path)
    heading, status = widgets.HTML(), widgets.HTML()
    texts = {name: widgets.HTML() for name in ("input", "reference", "output")}
    note = widgets.Textarea(
        placeholder="note (optional): what is wrong or missing?", layout=widgets.Layout(width="100%")
    )
    progress = widgets.IntProgress(min=0, max=len(session.rows))
    rate_buttons = [
        widgets.Button(description=rating, button_style=style)
        for rating, style in zip(RATING_SCORES, ("success", "warning", "danger"))
    ]
    previous_button, next_button = widgets.Button(description="◀ prev"), widgets.Button(description="next ▶")

    def show(message: str = "") -> None:
        row, existing = session.current, session.current_rating
        heading.value = (
            f"<b>Item {html.escape(row['item'])}</b>, answer {session.position + 1} of "
            f"{len(session.rows)} <small>(output {html.escape(row['output_id'])})</small>"
        )
        for name, widget in texts.items():
            widget.value = f"<b>{name}</b><pre style='white-space: pre-wrap'>{html.escape(row[name])}</pre>"
        note.value = existing["note"] if existing else ""
        progress.value = session.rated
        progress.description = f"{session.rated}/{len(session.rows)}"
        status.value = message or (f"rated <b>{existing['rating']}</b>" if existing else "not rated yet")

    def on_rate(button) -> None:
        try:
            session.rate(button.description, note.value)
        except (OSError, ValueError) as error:  # shown in the panel: a click handler's exception is invisible
            show(f"<span style='color: #c00'>not saved: {html.escape(str(error))}</span>")
            return
        show()

    def on_move(button) -> None:
        if button is previous_button:
            session.previous()
        else:
            session.next()
        show()

    for button in rate_buttons:
        button.on_click(on_rate)
    previous_button.on_click(on_move)
    next_button.on_click(on_move)
    show()
    return widgets.VBox(
        [
            heading,
            *texts.values(),
            note,
            widgets.HBox(rate_buttons),
            widgets.HBox([previous_button, next_button, progress, status]),
        ]
    )


def interactive_frontend() -> bool:
    """Whether a person is at the notebook: a Jupyter kernel whose frontend answers input requests.

    Jupyter Lab, Notebook and VS Code run cells with ``allow_stdin`` on; papermill and nbval run them with it
    off, and plain Python has no kernel at all.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


def aggregate_ratings(ratings: dict[str, dict], key: dict[str, dict], seed: int = 0) -> dict[str, dict]:
    """Per run on the sheet: ``rated``, the count of each rating, and ``score``, the mean rating (correct 1,
    partly 0.5, wrong 0) with its 95% bootstrap interval as ``{value, low, high}`` (NaN when none is rated).

    Ratings of answers the key does not know (another sheet's, or answers changed since) are left out.

    Raises:
        ValueError: there are ratings, but none of an answer in the key.
    """
    by_run: dict[str, list[str]] = defaultdict(list)
    for identifier, entry in ratings.items():
        if identifier in key:
            by_run[key[identifier]["run"]].append(entry["rating"])
    if ratings and not by_run:
        raise ValueError(
            f"none of the {len(ratings)} ratings is of an answer in this key: were they made on another review sheet?"
        )
    summary = {}
    for run in dict.fromkeys(place["run"] for place in key.values()):
        labels = by_run.get(run, [])
        scores = [RATING_SCORES[label] for label in labels]
        summary[run] = {
            "rated": len(labels),
            **{rating: labels.count(rating) for rating in RATING_SCORES},
            "score": Estimate.of_mean(scores, seed=seed),
        }
    return summary


def automatic_judgement(scores: dict[str, float], task: Task, rouge_threshold: float = 0.5) -> bool | None:
    """The metrics' yes/no on one answer, from its ``per_example_scores``.

    JSON tasks: valid JSON and every label field right (valid JSON alone for tasks without labels).
    Text tasks: ROUGE-L of the answer against the reference at least ``rouge_threshold``.
    None when the reference needed for the judgement is missing.
    """
    if task.answer_format == "text":
        rouge = scores.get(f"{task.answer_fields[0]}_rougeL")
        return None if rouge is None else rouge >= rouge_threshold
    labels = [f"{field}_accuracy" for field in task.label_fields]
    if not all(name in scores for name in labels):
        return None
    return scores["json_valid"] == 1.0 and all(scores[name] == 1.0 for name in labels)


def describe_judgement(task: Task, rouge_threshold: float = 0.5) -> str:
    """``automatic_judgement``'s rule in words, for reports."""
    if task.answer_format == "text":
        return f"{task.answer_fields[0]} ROUGE-L >= {rouge_threshold}"
    return "valid JSON" + (f" and every label right ({', '.join(task.label_fields)})" if task.label_fields else "")


def cohens_kappa(first: Sequence, second: Sequence) -> float:
    """Cohen's kappa of two raters' labels on the same items: agreement beyond chance, (p_o - p_e) / (1 - p_e).

    NaN when there are no items, or when chance agreement is already certain (both gave one same label to all).
    """
    if len(first) != len(second):
        raise ValueError(f"{len(first)} labels from one rater, {len(second)} from the other")
    n = len(first)
    if not n:
        return float("nan")
    observed = sum(a == b for a, b in zip(first, second)) / n
    first_counts, second_counts = Counter(first), Counter(second)
    expected = sum(first_counts[label] * second_counts[label] for label in first_counts) / n**2
    return float("nan") if expected == 1 else (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class Agreement:
    """How often people and the metrics agree on which answers are correct (``rating_agreement``)."""

    compared: int  # answers judged by both
    agreement: float  # share judged alike
    kappa: float  # Cohen's kappa: agreement beyond what chance gives
    both_correct: int
    human_only: int  # correct to people only
    automatic_only: int  # correct to the metrics only
    neither: int
    stale: int  # ratings of answers that changed since the sheet was exported (or whose run is gone)
    rule: str  # the automatic rule, in words

    def sentence(self) -> str:
        return (
            f"People vs metrics ({self.rule}) on {self.compared} rated answers: {self.agreement:.0%} agree, "
            f"Cohen's kappa {self.kappa:.2f} (both correct {self.both_correct}, only people {self.human_only}, "
            f"only metrics {self.automatic_only}, neither {self.neither}; stale {self.stale})"
        )


def rating_agreement(
    ratings: dict[str, dict],
    key: dict[str, dict],
    results: dict[str, EvaluationResult],
    task: Task,
    rouge_threshold: float = 0.5,
) -> Agreement:
    """How often people and the metrics agree on which answers are correct.

    A person says correct when the rating is ``correct`` (partly counts as not correct); the metrics say it by
    ``automatic_judgement``. Only ratings of answers still in ``results`` count: ``stale`` counts those whose
    answer has changed since the sheet was exported (or whose run is gone).
    """
    human, automatic, stale = [], [], 0
    for identifier, entry in ratings.items():
        if identifier not in key:
            continue
        place = key[identifier]
        predictions = results[place["run"]].predictions if place["run"] in results else []
        if (
            place["example"] >= len(predictions)
            or output_id(place["example"], predictions[place["example"]], place["run"]) != identifier
        ):
            stale += 1
            continue
        prediction = predictions[place["example"]]
        judgement = automatic_judgement(prediction.scores, task, rouge_threshold)
        if judgement is not None:
            human.append(entry["rating"] == "correct")
            automatic.append(judgement)
    pairs = Counter(zip(human, automatic))
    return Agreement(
        compared=len(human),
        agreement=(pairs[True, True] + pairs[False, False]) / len(human) if human else float("nan"),
        kappa=cohens_kappa(human, automatic),
        both_correct=pairs[True, True],
        human_only=pairs[True, False],
        automatic_only=pairs[False, True],
        neither=pairs[False, False],
        stale=stale,
        rule=describe_judgement(task, rouge_threshold),
    )


def human_vs_automatic(human: dict[str, dict], results: dict[str, EvaluationResult], metrics: list[str]) -> list[dict]:
    """Rows per run: the people's ratings (``aggregate_ratings``) next to the automatic ``metrics``' values."""
    rows = []
    for run, result in results.items():
        rated = human.get(
            run,
            {
                "rated": 0,
                **dict.fromkeys(RATING_SCORES, 0),
                "score": Estimate(float("nan"), float("nan"), float("nan")),
            },
        )
        score = rated["score"]
        rows.append(
            {
                "run": run,
                "rated": rated["rated"],
                **{r: rated[r] for r in RATING_SCORES},
                "human score": round(score.value, 3),
                "interval": score.interval_text() if rated["rated"] else "",
                **{name: round(result.metrics[name].value, 3) for name in metrics if name in result.metrics},
            }
        )
    return rows
