"""Tasks: how a dataset record becomes a chat prompt and a target answer, and how an answer is read back."""

from __future__ import annotations

import json
from dataclasses import dataclass

CATEGORIES = ("billing", "outage", "slow_speed", "hardware", "account", "cancellation")
URGENCIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Task:
    """A supervised task: the input field, the answer fields and the instruction."""

    name: str
    input_field: str
    answer_fields: tuple[str, ...]
    label_fields: tuple[str, ...]  # answer fields scored by accuracy
    instruction: str

    def prompt_messages(self, record: dict) -> list[dict]:
        return [
            {"role": "system", "content": self.instruction},
            {"role": "user", "content": str(record[self.input_field])},
        ]

    def answer_text(self, record: dict) -> str:
        """The target answer: a compact JSON object of the answer fields."""
        return json.dumps({field: record[field] for field in self.answer_fields}, ensure_ascii=False, separators=(",", ":"))

    def to_messages(self, record: dict) -> list[dict]:
        return self.prompt_messages(record) + [{"role": "assistant", "content": self.answer_text(record)}]


SUPPORT_TICKETS = Task(
    name="support_tickets",
    input_field="ticket",
    answer_fields=("category", "urgency", "reply"),
    label_fields=("category", "urgency"),
    instruction=(
        "Triage the customer's ticket. Answer only with JSON: "
        f'{{"category": {"|".join(CATEGORIES)}, "urgency": {"|".join(URGENCIES)}, '
        '"reply": a one- or two-sentence first response}.'
    ),
)

TASKS = {task.name: task for task in [SUPPORT_TICKETS]}


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
