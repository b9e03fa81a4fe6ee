"""Tasks: how a dataset record becomes a chat prompt and a target answer, and how an answer is read back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

CATEGORIES = ("billing", "outage", "slow_speed", "hardware", "account", "cancellation")
URGENCIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Task:
    """A supervised task: its fields, instruction, answer format and the layouts it accepts."""

    name: str
    input_field: str
    answer_fields: tuple[str, ...]
    instruction: str
    answer_format: str = "json"  # "json": a compact object of answer_fields; "text": the single answer field
    label_values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # closed-set fields, scored by accuracy
    input_is_object: bool = False  # the input is a JSON object (rendered as "key: value" lines)
    field_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other layouts' names for our fields
    nested_keys: tuple[str, ...] = ()  # other layouts nest fields under these keys
    language_filter: bool = False
    stratify_field: str | None = None

    @property
    def headline_metrics(self) -> list[str]:
        """The metrics lesson 05 compares runs on."""
        if self.answer_format == "text":
            return (["attribute_coverage"] if self.input_is_object else []) + [f"{self.answer_fields[0]}_rougeL"]
        return (
            ["json_valid"]
            + [f"{f}_accuracy" for f in self.label_fields]
            + [f"{f}_rougeL" for f in self.text_answer_fields]
        )

    @property
    def quality_field(self) -> str:
        """The free-text field that quality filters read (the input, or the answer for object inputs)."""
        return self.text_answer_fields[0] if self.input_is_object else self.input_field

    @property
    def label_fields(self) -> tuple[str, ...]:
        return tuple(self.label_values)

    @property
    def text_answer_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.answer_fields if f not in self.label_values)

    def label_error(self, record: dict) -> tuple[str, str] | None:
        """The first closed-set field whose value is outside its label set and why; None when every one fits.

        Fields the record lacks are not checked here (the schema check reports them).
        """
        for name, allowed in self.label_values.items():
            if name in record and record[name] not in allowed:
                return name, f"{record[name]!r} is not one of {', '.join(allowed)}"
        return None

    def input_text(self, record: dict) -> str:
        value = record[self.input_field]
        if self.input_is_object:
            return "\n".join(
                f"{key}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for key, v in value.items()
            )
        return str(value)

    def stratum(self, record: dict) -> str:
        """The value that stratified splits keep in proportion (top level or inside an object input)."""
        if not self.stratify_field:
            return ""
        inner = record.get(self.input_field)
        value = record.get(self.stratify_field, inner.get(self.stratify_field) if isinstance(inner, dict) else None)
        return str(value)

    def prompt_messages(self, record: dict, examples: Sequence[dict] = ()) -> list[dict]:
        """The chat prompt of a record: the instruction, then the record's input as the user turn.

        Args:
            examples: solved records shown first as user/assistant pairs (a few-shot prompt); none by default.
        """
        shots = [
            message
            for example in examples
            for message in (
                {"role": "user", "content": self.input_text(example)},
                {"role": "assistant", "content": self.answer_text(example)},
            )
        ]
        return [
            {"role": "system", "content": self.instruction},
            *shots,
            {"role": "user", "content": self.input_text(record)},
        ]

    def answer_text(self, record: dict) -> str:
        """The target answer: a compact JSON object of the answer fields, or the plain text answer."""
        if self.answer_format == "text":
            return str(record[self.answer_fields[0]])
        return json.dumps({f: record[f] for f in self.answer_fields}, ensure_ascii=False, separators=(",", ":"))

    def to_messages(self, record: dict) -> list[dict]:
        return self.prompt_messages(record) + [{"role": "assistant", "content": self.answer_text(record)}]


SUPPORT_TICKETS = Task(
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
)

LISTINGS = Task(
    name="listings",
    input_field="attributes",
    answer_fields=("description",),
    instruction="Write a short, factual property listing description (two or three sentences) from these attributes.",
    answer_format="text",
    input_is_object=True,
    field_aliases={"attributes": ("features_table", "data", "facts"), "description": ("text", "listing_text", "desc")},
    stratify_field="type",
)

TASKS = {task.name: task for task in [SUPPORT_TICKETS, LISTINGS]}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"Unknown dataset/task '{name}'. Known: {', '.join(TASKS)}") from None


def parse_answer(text: str) -> dict | None:
    """Parse a model's answer as a JSON object; None when it is not valid JSON or not an object."""
    text = text.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
