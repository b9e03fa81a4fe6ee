"""Task spec files: the built-in tasks load from them, bad specs fail with every problem named, paths work."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from ftlib.core import tasks
from ftlib.core.tasks import Task

ROOT = Path(__file__).resolve().parent.parent

# The built-in tasks exactly as ftlib/core/tasks.py hard-coded them before they became spec files.
CATEGORIES = ("billing", "outage", "slow_speed", "hardware", "account", "cancellation")
URGENCIES = ("low", "medium", "high")
HARD_CODED = {
    "support_tickets": Task(
        name="support_tickets",
        input_field="ticket",
        answer_fields=("category", "urgency", "reply"),
        instruction=(
            "Triage the customer's ticket. Answer only with JSON: "
            f'{{"category": {"|".join(CATEGORIES)}, "urgency": {"|".join(URGENCIES)}, '
            '"reply": a one- or two-sentence first response}.'
        ),
        label_values={"category": CATEGORIES, "urgency": URGENCIES},
        field_aliases={
            "ticket": ("text", "message", "body", "customer_message"),
            "category": ("cat", "topic", "type"),
            "urgency": ("priority", "severity"),
            "reply": ("response", "answer", "first_reply"),
        },
        nested_keys=("label", "labels", "meta"),
        language_filter=True,
        stratify_field="category",
    ),
    "listings": Task(
        name="listings",
        input_field="attributes",
        answer_fields=("description",),
        instruction=(
            "Write a short, factual property listing description (two or three sentences) from these attributes."
        ),
        answer_format="text",
        input_is_object=True,
        field_aliases={
            "attributes": ("features_table", "data", "facts"),
            "description": ("text", "listing_text", "desc"),
        },
        stratify_field="type",
    ),
}
LOCATION_FIELDS = ("data_file", "spec_file", "field_test_file")  # file locations: not part of the old Task


@pytest.mark.unit
@pytest.mark.parametrize("name", list(HARD_CODED))
def test_builtin_specs_equal_the_hard_coded_tasks(name):
    loaded = tasks.load_task_spec(ROOT / "data" / "tasks" / f"{name}.yaml")
    expected = HARD_CODED[name]
    for spec in fields(Task):
        if spec.name in LOCATION_FIELDS:
            continue
        assert getattr(loaded, spec.name) == getattr(expected, spec.name), spec.name
        assert type(getattr(loaded, spec.name)) is type(getattr(expected, spec.name)), spec.name
    for label, values in loaded.label_values.items():
        assert type(values) is tuple, label
    for alias_field, aliases in loaded.field_aliases.items():
        assert type(aliases) is tuple, alias_field
    assert loaded.headline_metrics == expected.headline_metrics
    assert loaded.data_file == ROOT / "data" / "samples" / f"{name}.jsonl"
    assert loaded.spec_file == ROOT / "data" / "tasks" / f"{name}.yaml"


@pytest.mark.unit
@pytest.mark.parametrize("name", list(HARD_CODED))
def test_spec_round_trip(name, tmp_path):
    """A task written with save_task_spec reads back equal, its data path still pointing at the same file."""
    task = tasks.load_task_spec(ROOT / "data" / "tasks" / f"{name}.yaml")
    path = tasks.save_task_spec(task, tmp_path / "nested" / "task.yaml")
    again = tasks.load_task_spec(path)
    assert again.data_file == task.data_file
    for spec in fields(Task):
        if spec.name != "spec_file":
            assert getattr(again, spec.name) == getattr(task, spec.name), spec.name
    assert again.spec_file == path.resolve()


GOOD = {
    "name": "sentiment",
    "data": "reviews.jsonl",
    "input_field": "review",
    "answer_fields": ["sentiment", "summary"],
    "labels": {"sentiment": ["positive", "negative"]},
    "instruction": "Classify the review.",
    "stratify_field": "sentiment",
}


def write_spec(tmp_path, spec, name="task.yaml") -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False) if isinstance(spec, dict) else spec)
    return path


def problems_of(tmp_path, spec) -> list[str]:
    path = write_spec(tmp_path, spec)
    with pytest.raises(tasks.TaskSpecError) as caught:
        tasks.load_task_spec(path)
    message = str(caught.value)
    assert str(path.resolve()) in message and f"{len(caught.value.problems)} problem(s)" in message
    assert all(problem in message for problem in caught.value.problems)
    return caught.value.problems


@pytest.mark.unit
def test_a_good_custom_spec_loads(tmp_path):
    task = tasks.load_task_spec(write_spec(tmp_path, GOOD))
    assert task.label_values == {"sentiment": ("positive", "negative")}
    assert task.text_answer_fields == ("summary",) and task.answer_format == "json" and not task.input_is_object
    assert task.data_file == (tmp_path / "reviews.jsonl").resolve() and task.spec_file == (tmp_path / "task.yaml")
    assert task.headline_metrics == ["json_valid", "sentiment_accuracy", "summary_rougeL"]
    assert task.answer_text({"sentiment": "positive", "summary": "Great.", "review": "x"}) == (
        '{"sentiment":"positive","summary":"Great."}'
    )


@pytest.mark.unit
def test_metrics_follow_the_spec(tmp_path):
    """Label fields get accuracy and macro-F1, free-text fields ROUGE-L, with no code for the new task."""
    from ftlib.measure.evaluate import score_answers

    task = tasks.load_task_spec(write_spec(tmp_path, GOOD))
    references = [
        {"review": "loved it", "sentiment": "positive", "summary": "Loved it."},
        {"review": "broke", "sentiment": "negative", "summary": "It broke."},
    ]
    predictions = ['{"sentiment": "positive", "summary": "Loved it."}', "not json"]
    metrics = score_answers(predictions, references, task)
    assert set(metrics) == {"json_valid", "sentiment_accuracy", "summary_rougeL", "sentiment_macro_f1"}
    assert metrics["json_valid"].value == 0.5 and metrics["sentiment_accuracy"].value == 0.5


@pytest.mark.unit
@pytest.mark.parametrize(
    "change, expected",
    [
        ({"labelz": {}}, "labelz: unknown key (did you mean 'labels'?)"),
        ({"name": None}, "name: missing (required)"),
        ({"instruction": None}, "instruction: missing (required)"),
        ({"name": 3}, "name: expected a non-empty string, got int 3"),
        ({"name": "my task"}, "name: 'my task' names the run folder"),
        ({"answer_fields": "sentiment"}, "answer_fields: expected a list of strings, got str"),
        ({"answer_fields": []}, "answer_fields: empty"),
        ({"answer_fields": ["summary", "summary"], "labels": {}}, "answer_fields: listed twice: summary"),
        ({"labels": {"mood": ["up"]}}, "labels.mood: not an answer field (answer_fields: sentiment, summary)"),
        ({"labels": {"sentiment": []}}, "labels.sentiment: empty label set"),
        ({"labels": {"sentiment": [True, False]}}, "labels.sentiment: every entry must be a non-empty string"),
        ({"labels": ["sentiment"]}, "labels: expected a mapping"),
        ({"stratify_field": "summary"}, "stratify_field: 'summary' is not a label field (label fields: sentiment)"),
        ({"answer_format": "xml"}, "answer_format: 'xml' is not one of json, text"),
        ({"input_format": "table"}, "input_format: 'table' is not one of text, object"),
        ({"answer_format": "text"}, "answer_format: text answers exactly one field, but answer_fields has 2"),
        ({"language_filter": "yes"}, "language_filter: expected true or false, got 'yes'"),
        ({"nested_keys": "meta"}, "nested_keys: expected a list of strings"),
        ({"field_aliases": {"mood": ["feeling"]}}, "field_aliases.mood: not the input or an answer field"),
        ({"field_aliases": {"review": "text"}}, "field_aliases.review: expected a list of strings"),
        ({"input_field": "summary"}, "input_field: 'summary' is also an answer field"),
    ],
)
def test_each_problem_is_named(tmp_path, change, expected):
    spec = {key: value for key, value in (GOOD | change).items() if value is not None}
    problems = problems_of(tmp_path, spec)
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.unit
def test_every_problem_is_listed_at_once(tmp_path):
    spec = {
        "name": "x",
        "input_field": "review",
        "answer_fields": ["summary", "sentiment"],
        "answer_format": "text",
        "labels": {"sentiment": [], "mood": ["up"]},
        "stratify_field": "summary",
        "extra": 1,
    }
    problems = problems_of(tmp_path, spec)
    keys = [problem.split(":")[0] for problem in problems]
    assert keys == [
        "extra",
        "instruction",
        "answer_format",
        "labels.sentiment",
        "labels.sentiment",
        "labels.mood",
        "labels.mood",
        "stratify_field",
    ], problems


@pytest.mark.unit
@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("", "expected a mapping of keys (name, input_field, answer_fields, instruction, ...), got an empty file"),
        ("- a\n- b\n", "got a list"),
    ],
)
def test_unreadable_spec_files(tmp_path, text, expected):
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1 and expected in problems[0], problems


# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, before any check could run.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.unit
def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    problems = problems_of(tmp_path, "name: tickets\n" + ALIAS_BOMB)
    assert len(problems) == 1 and "an alias (*a) is not allowed in a task spec" in problems[0], problems
    assert "line 3" in problems[0] and len(problems[0]) < 400, "the line of the first alias, in a short message"


@pytest.mark.unit
def test_missing_spec_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.yaml: no such file"):
        tasks.load_task_spec(tmp_path / "no-such.yaml")


@pytest.mark.unit
def test_get_task_takes_a_name_or_a_spec_path(tmp_path, monkeypatch):
    assert tasks.get_task("support_tickets") is tasks.SUPPORT_TICKETS and tasks.get_task("listings") is tasks.LISTINGS
    path = write_spec(tmp_path, GOOD, "sentiment.yaml")
    for given in (path, str(path)):
        assert tasks.get_task(given).name == "sentiment"
    monkeypatch.chdir(tmp_path)
    assert tasks.get_task("sentiment.yaml").spec_file == path.resolve()  # relative to the working folder
    with pytest.raises(
        KeyError, match="Unknown dataset/task 'tickets'. Known: support_tickets, listings, shop_chats; or give"
    ):
        tasks.get_task("tickets")
    with pytest.raises(FileNotFoundError, match="no-such.yaml: no such file"):
        tasks.get_task("no-such.yaml")


@pytest.mark.unit
def test_builtin_constants_come_from_the_specs():
    assert tasks.CATEGORIES == ("billing", "outage", "slow_speed", "hardware", "account", "cancellation")
    assert tasks.URGENCIES == ("low", "medium", "high")
    assert list(tasks.TASKS) == ["support_tickets", "listings", "shop_chats"]
    assert tasks.SUPPORT_TICKETS.spec_file == ROOT / "data" / "tasks" / "support_tickets.yaml"


@pytest.mark.unit
def test_sample_path_follows_the_spec(tmp_path):
    from ftlib.engine.profiles import sample_path

    assert sample_path("listings") == ROOT / "data" / "samples" / "listings.jsonl"
    (tmp_path / "reviews.jsonl").write_text("{}\n")
    assert sample_path(write_spec(tmp_path, GOOD)) == tmp_path / "reviews.jsonl"
    with pytest.raises(FileNotFoundError, match=r"nodata.yaml: data: missing"):
        sample_path(write_spec(tmp_path, {k: v for k, v in GOOD.items() if k != "data"}, "nodata.yaml"))
    with pytest.raises(FileNotFoundError, match=r"gone.yaml: data: no such file .*elsewhere.jsonl"):
        sample_path(write_spec(tmp_path, GOOD | {"data": "elsewhere.jsonl"}, "gone.yaml"))


@pytest.mark.unit
def test_a_lesson_resolves_a_spec_path(tmp_path, monkeypatch):
    """The raw data comes from the spec and the default run folder is named after the spec's task."""
    from ftlib.engine import profiles
    from ftlib.lessons import lesson

    monkeypatch.delenv("FTLIB_RUN_DIR", raising=False)
    monkeypatch.setattr(profiles, "project_root", lambda start=None: tmp_path / "repo")
    (tmp_path / "reviews.jsonl").write_text("{}\n")
    path = write_spec(tmp_path, GOOD)
    started = lesson.start("smoke", str(path))
    assert started.task.name == "sentiment" and started.dataset == str(path)
    assert started.raw_data == tmp_path / "reviews.jsonl"
    assert started.paths.root == tmp_path / "repo" / "runs" / "sentiment-smoke" and started.paths.root.is_dir()
    with pytest.raises(tasks.TaskSpecError, match="stratify_field"):
        lesson.start("smoke", str(write_spec(tmp_path, GOOD | {"stratify_field": "summary"}, "bad.yaml")))


@pytest.mark.unit
def test_the_docs_spec_example_loads(tmp_path):
    """The spec shown under "Your own data" (docs/data.md) is a valid spec."""
    import re

    section = (ROOT / "docs" / "data.md").read_text().split("## Your own data", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    task = tasks.load_task_spec(write_spec(tmp_path, example))
    assert task.name == "ticket_category" and task.headline_metrics == [
        "json_valid",
        "category_accuracy",
        "reply_rougeL",
    ]
    # Saved in the repository root, as docs/data.md says, its data is the bundled sample file.
    assert task.data_file == (tmp_path / "data" / "samples" / "support_tickets.jsonl").resolve()
    assert (ROOT / task.data_file.relative_to(tmp_path.resolve())).is_file()


@pytest.mark.unit
def test_a_key_given_twice_is_a_problem(tmp_path):
    import yaml

    text = yaml.safe_dump(GOOD, sort_keys=False) + "instruction: Another one.\n"
    problems = problems_of(tmp_path, text)
    assert problems == [f"instruction: given twice (line {len(text.splitlines())}); keep one"]


@pytest.mark.unit
def test_answer_fields_order_follows_the_spec_and_labels_still_score(tmp_path):
    """A reply-first spec writes reply-first answers; scoring reads labels by key, in any order."""
    from dataclasses import replace

    from ftlib.measure.evaluate import per_example_scores

    spec = tasks.save_task_spec(
        replace(tasks.SUPPORT_TICKETS, answer_fields=("reply", "category", "urgency")), tmp_path / "reply_first.yaml"
    )
    task = tasks.load_task_spec(spec)
    record = {"ticket": "charged twice", "category": "billing", "urgency": "high", "reply": "Refund on the way."}
    answer = task.answer_text(record)
    assert answer == '{"reply":"Refund on the way.","category":"billing","urgency":"high"}'
    assert [answer[start:end] for start, end in task.label_value_spans(answer)] == ["billing", "high"]
    scores = per_example_scores(answer, record, task)
    assert scores["json_valid"] == scores["category_accuracy"] == scores["urgency_accuracy"] == 1.0
    # and a default-order answer scores the same under the reply-first task
    assert per_example_scores(tasks.SUPPORT_TICKETS.answer_text(record), record, task) == scores


@pytest.mark.unit
def test_messages_quote_a_short_excerpt_of_a_long_value(tmp_path):
    big = "x" * 5000
    key = "y" * 500  # YAML's simple keys stop at 1,024 characters
    spec = f"name: t\ninput_field: t\nanswer_fields: [a]\ninstruction: [{big}]\nlabels:\n  a: {big}\n{key}: 1\n"
    problems = problems_of(tmp_path, spec)
    assert len(problems) == 3 and all(len(problem) < 400 for problem in problems), problems
    assert any("... (5,004 characters)" in problem for problem in problems), problems
