"""Tasks: how a dataset record becomes a chat prompt and a target answer, and how an answer is read back.

A task is declared in a YAML spec file (``load_task_spec``); the built-in ones are ``data/tasks/*.yaml``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def excerpt(value, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters with the full length noted: a message quotes a value,
    it never repeats a whole file's worth of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} characters)"


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
    input_is_chat: bool = False  # the input is a chat ({role, content} turns); the answer is its last assistant turn
    field_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other layouts' names for our fields
    nested_keys: tuple[str, ...] = ()  # other layouts nest fields under these keys
    language_filter: bool = False
    stratify_field: str | None = None
    data_file: Path | None = None  # the raw records the lessons read (a spec's ``data``)
    field_test_file: Path | None = None  # records written apart from the data, never trained on (``field_test``)
    spec_file: Path | None = None  # the spec file this task was loaded from

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
    def input_format(self) -> str:
        """How the input is read: ``text``, ``object`` (JSON object) or ``messages`` (a chat)."""
        return "messages" if self.input_is_chat else "object" if self.input_is_object else "text"

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
                return name, f"{excerpt(record[name])} is not one of {', '.join(allowed)}"
        return None

    def chat(self, record: dict) -> list[dict]:
        """A chat task's turns as the record gives them (the last is the assistant's answer)."""
        return record[self.input_field]

    def history(self, record: dict) -> list[dict]:
        """A chat's turns before its answer: all but the last assistant turn (all, when the user spoke last)."""
        turns = self.chat(record)
        return turns[:-1] if turns and turns[-1]["role"] == "assistant" else turns

    def input_text(self, record: dict) -> str:
        """The input as one text: shown in tables, compared for duplicates (a chat: its turns before the answer)."""
        value = record[self.input_field]
        if self.input_is_chat:
            return "\n".join(f"{m['role']}: {m['content']}" for m in self.history(record) if m["role"] != "system")
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

    def text_turns(self, record: dict, roles: Sequence[str] = ("user",)) -> list[tuple[str, str]]:
        """``(field, text)`` of a record's free texts: a chat's turns of ``roles`` (field ``messages[i].content``),
        else the input field (unless it is an object)."""
        if self.input_is_chat:
            return [
                (f"{self.input_field}[{i}].content", m["content"])
                for i, m in enumerate(self.chat(record))
                if m["role"] in roles
            ]
        return [] if self.input_is_object else [(self.input_field, record[self.input_field])]

    def quality_text(self, record: dict) -> tuple[str, str]:
        """``(field, text)`` that the quality filter reads: a chat's last customer turn, else ``quality_field``."""
        if self.input_is_chat:
            return self.text_turns(record)[-1]
        return self.quality_field, record[self.quality_field]

    def answers(self, record: dict) -> dict:
        """The record's reference answer, by answer field (a chat: its last assistant turn); absent fields left out."""
        if self.input_is_chat:
            turns = record.get(self.input_field)
            if isinstance(turns, list) and turns and turns[-1].get("role") == "assistant":
                return {self.answer_fields[0]: turns[-1]["content"]}
            return {}
        return {f: record[f] for f in self.answer_fields if f in record}

    def _system(self, turns: Sequence[dict]) -> list[dict]:
        """The instruction as the system turn, unless a chat brings its own."""
        return [] if turns and turns[0]["role"] == "system" else [{"role": "system", "content": self.instruction}]

    def prompt_messages(self, record: dict, examples: Sequence[dict] = ()) -> list[dict]:
        """The chat prompt of a record: the instruction, then the record's input as the user turn.

        A chat task's prompt is the instruction (unless the chat has a system turn) and every turn before the
        last assistant turn (every turn, for a chat that ends with the user: ``generate`` on new chats);
        few-shot examples are then whole earlier chats.

        Args:
            examples: solved records shown first as user/assistant pairs (a few-shot prompt); none by default.
        """
        if self.input_is_chat:
            turns = self.chat(record)
            shots = [m for example in examples for m in self.chat(example) if m["role"] != "system"]
            return [*self._system(turns), *shots, *self.history(record)]
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
        if self.input_is_chat:
            return self.chat(record)[-1]["content"]
        if self.answer_format == "text":
            return str(record[self.answer_fields[0]])
        return json.dumps({f: record[f] for f in self.answer_fields}, ensure_ascii=False, separators=(",", ":"))

    def label_value_spans(self, answer: str) -> list[tuple[int, int]]:
        """Character spans ``(start, end)`` of the closed-label values in a JSON answer, quotes left out.

        In ``{"category":"billing","urgency":"high","reply":"..."}`` they are the spans of ``billing`` and
        ``high``, whatever the order of the fields. A text answer, an answer that is not a JSON object, or a
        label that is absent or not a string gives no span.
        """
        if self.answer_format != "json" or not self.label_values:
            return []
        try:
            parsed = json.loads(answer)
        except json.JSONDecodeError:
            return []
        if not isinstance(parsed, dict):
            return []
        spans = []
        for name in self.label_fields:
            value = parsed.get(name)
            if not isinstance(value, str) or not value:
                continue
            key = re.escape(json.dumps(name, ensure_ascii=False))
            quoted = json.dumps(value, ensure_ascii=False)
            # A key inside a string value is escaped (\"category\"), so the first unescaped match is the field.
            found = re.search(rf"(?<!\\){key}\s*:\s*{re.escape(quoted)}", answer)
            if found:
                end = found.end() - 1  # before the closing quote
                spans.append((end - (len(quoted) - 2), end))
        return sorted(spans)

    def to_messages(self, record: dict) -> list[dict]:
        """The training conversation: the prompt and the answer (a chat: the instruction and every turn)."""
        if self.input_is_chat:
            turns = self.chat(record)
            return [*self._system(turns), *turns]
        return self.prompt_messages(record) + [{"role": "assistant", "content": self.answer_text(record)}]


def parse_answer(text: str) -> dict | None:
    """Parse a model's answer as a JSON object; None when it is not valid JSON or not an object."""
    text = text.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# Task spec files ---------------------------------------------------------------------------------------------

BUILTIN_SPECS = Path(__file__).resolve().parents[2] / "data" / "tasks"  # <name>.yaml of the built-in tasks
ANSWER_FORMATS = ("json", "text")
INPUT_FORMATS = ("text", "object", "messages")
REQUIRED_KEYS = ("name", "input_field", "answer_fields", "instruction")
SPEC_KEYS = (
    "name",
    "data",
    "input_field",
    "input_format",
    "answer_fields",
    "answer_format",
    "labels",
    "instruction",
    "stratify_field",
    "field_aliases",
    "nested_keys",
    "language_filter",
    "field_test",
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # it names the run folder


class TaskSpecError(ValueError):
    """A task spec file with problems; the message lists every one, each naming its key."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"task spec {self.path}: {len(self.problems)} problem(s):\n{listed}")


def _is_string_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item for item in value)


def _string_list_problem(key: str, value) -> str | None:
    """Why ``value`` is not a list of non-empty strings (None when it is)."""
    if not isinstance(value, list):
        return f"{key}: expected a list of strings, got {type(value).__name__} {excerpt(value)}"
    wrong = [item for item in value if not (isinstance(item, str) and item)]
    if wrong:
        hint = " (quote it: YAML reads yes/no/on/off as booleans and bare numbers as numbers)"
        return f"{key}: every entry must be a non-empty string; {', '.join(map(repr, wrong))} is not{hint}"
    duplicates = sorted({item for item in value if value.count(item) > 1})
    if duplicates:
        return f"{key}: listed twice: {', '.join(duplicates)}"
    return None


def spec_problems(spec: dict) -> list[str]:
    """Every problem of a parsed task spec, each naming its key; empty when the spec is good."""
    problems = []
    for key in spec:
        if key not in SPEC_KEYS:
            close = difflib.get_close_matches(str(key), SPEC_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(SPEC_KEYS)})"
            problems.append(f"{key if len(str(key)) <= 60 else excerpt(key)}: unknown key{hint}")
    problems += [f"{key}: missing (required)" for key in REQUIRED_KEYS if key not in spec]

    for key in ("name", "input_field", "instruction", "data", "stratify_field", "field_test"):
        if key in spec and not (isinstance(spec[key], str) and spec[key].strip()):
            problems.append(f"{key}: expected a non-empty string, got {type(spec[key]).__name__} {excerpt(spec[key])}")
    name = spec.get("name")
    if isinstance(name, str) and name.strip() and not NAME.fullmatch(name):
        problems.append(f"name: {excerpt(name)} names the run folder: use letters, digits, '_', '-' and '.' only")
    if "language_filter" in spec and not isinstance(spec["language_filter"], bool):
        problems.append(f"language_filter: expected true or false, got {excerpt(spec['language_filter'])}")
    for key, allowed in (("answer_format", ANSWER_FORMATS), ("input_format", INPUT_FORMATS)):
        if key in spec and spec[key] not in allowed:
            problems.append(f"{key}: {excerpt(spec[key])} is not one of {', '.join(allowed)}")
    if "nested_keys" in spec and (problem := _string_list_problem("nested_keys", spec["nested_keys"])):
        problems.append(problem)

    answers = spec.get("answer_fields")
    if "answer_fields" in spec:
        if problem := _string_list_problem("answer_fields", answers):
            problems.append(problem)
        elif not answers:
            problems.append("answer_fields: empty (name at least one field the model answers)")
    answers = answers if _is_string_list(answers) else []
    input_field = spec.get("input_field")
    if isinstance(input_field, str) and input_field in answers:
        problems.append(f"input_field: {excerpt(input_field)} is also an answer field")
    chat_input = spec.get("input_format") == "messages"
    text_format = spec.get("answer_format", "text" if chat_input else "json") == "text"
    if text_format and len(answers) > 1:
        problems.append(
            f"answer_format: text answers exactly one field, but answer_fields has {len(answers)} "
            f"({', '.join(answers)}): use answer_format json"
        )

    labels = spec.get("labels", {})
    if not isinstance(labels, dict):
        problems.append(f"labels: expected a mapping of answer field -> list of values, got {excerpt(labels)}")
        labels = {}
    for label, values in labels.items():
        if answers and label not in answers:
            problems.append(f"labels.{label}: not an answer field (answer_fields: {', '.join(answers)})")
        if text_format and not chat_input:
            problems.append(f"labels.{label}: label sets need answer_format json (a text answer has no fields)")
        if isinstance(values, list) and not values:
            problems.append(f"labels.{label}: empty label set (list the values this field may take)")
        elif problem := _string_list_problem(f"labels.{label}", values):
            problems.append(problem)

    if chat_input:
        if not text_format:
            problems.append("answer_format: a messages input is answered by its last assistant turn: use text")
        if labels:
            problems.append("labels: a messages input has no label fields (its answer is the last assistant turn)")
    stratify = spec.get("stratify_field")
    object_input = spec.get("input_format") == "object"
    # object inputs stratify on a key of the object, chats on a top-level field of the record
    if isinstance(stratify, str) and stratify.strip() and stratify not in labels and not (object_input or chat_input):
        known = f"label fields: {', '.join(labels)}" if labels else "this spec has no labels"
        problems.append(f"stratify_field: {excerpt(stratify)} is not a label field ({known})")

    return problems + _alias_problems(spec.get("field_aliases", {}), input_field, answers)


def _alias_problems(aliases, input_field, answers: list[str]) -> list[str]:
    """The problems of a spec's ``field_aliases``: other names only for the input and the answer fields."""
    if not isinstance(aliases, dict):
        return [f"field_aliases: expected a mapping of field -> list of other names, got {excerpt(aliases)}"]
    problems = []
    own_fields = [input_field, *answers]
    for alias_field, names in aliases.items():
        if answers and alias_field not in own_fields:
            problems.append(
                f"field_aliases.{alias_field}: not the input or an answer field ({', '.join(map(str, own_fields))})"
            )
        if problem := _string_list_problem(f"field_aliases.{alias_field}", names):
            problems.append(problem)
    return problems


def load_task_spec(path: str | Path) -> Task:
    """The ``Task`` a YAML spec file declares (its ``data`` path is relative to the spec file).

    Raises:
        FileNotFoundError: no such file.
        TaskSpecError: the file is not valid YAML or the spec has problems (all of them, in one message).
    """
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"task spec {path}: no such file")
    duplicates: list[str] = []

    class Loader(yaml.SafeLoader):
        """A safe loader that refuses aliases and notes keys given twice in a mapping (plain YAML keeps the last
        silently). Aliases are refused before they are expanded: a few nested ones (an "alias bomb") would
        otherwise fill memory inside the loader, before any check runs."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"an alias (*{event.anchor[:40]}) is not allowed in a task spec: write the value out",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str) and key in seen:
                    duplicates.append(f"{key}: given twice (line {key_node.start_mark.line + 1}); keep one")
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # safe: Loader is a SafeLoader
    except yaml.YAMLError as error:
        raise TaskSpecError(path, [f"not valid YAML: {error}"]) from None
    if not isinstance(spec, dict):
        kind = "an empty file" if spec is None else f"a {type(spec).__name__}"
        raise TaskSpecError(path, [f"expected a mapping of keys ({', '.join(REQUIRED_KEYS)}, ...), got {kind}"])
    problems = duplicates + spec_problems(spec)
    if problems:
        raise TaskSpecError(path, problems)
    return Task(
        name=spec["name"],
        input_field=spec["input_field"],
        answer_fields=tuple(spec["answer_fields"]),
        instruction=spec["instruction"],
        answer_format=spec.get("answer_format", "text" if spec.get("input_format") == "messages" else "json"),
        label_values={label: tuple(values) for label, values in spec.get("labels", {}).items()},
        input_is_object=spec.get("input_format", "text") == "object",
        input_is_chat=spec.get("input_format", "text") == "messages",
        field_aliases={name: tuple(aliases) for name, aliases in spec.get("field_aliases", {}).items()},
        nested_keys=tuple(spec.get("nested_keys", ())),
        language_filter=spec.get("language_filter", False),
        stratify_field=spec.get("stratify_field"),
        data_file=(path.parent / spec["data"]).resolve() if spec.get("data") else None,
        field_test_file=(path.parent / spec["field_test"]).resolve() if spec.get("field_test") else None,
        spec_file=path,
    )


def task_spec(task: Task, folder: str | Path) -> dict:
    """The spec of a task as written to a file in ``folder`` (``data`` relative to it); the inverse of loading."""
    spec: dict = {"name": task.name}
    if task.data_file is not None:
        spec["data"] = os.path.relpath(task.data_file, Path(folder).resolve())
    spec |= {
        "input_field": task.input_field,
        "input_format": task.input_format,
        "answer_fields": list(task.answer_fields),
        "answer_format": task.answer_format,
    }
    if task.label_values:
        spec["labels"] = {label: list(values) for label, values in task.label_values.items()}
    spec["instruction"] = task.instruction
    if task.stratify_field:
        spec["stratify_field"] = task.stratify_field
    if task.field_aliases:
        spec["field_aliases"] = {name: list(aliases) for name, aliases in task.field_aliases.items()}
    if task.nested_keys:
        spec["nested_keys"] = list(task.nested_keys)
    spec["language_filter"] = task.language_filter
    if task.field_test_file is not None:
        spec["field_test"] = os.path.relpath(task.field_test_file, Path(folder).resolve())
    return spec


def save_task_spec(task: Task, path: str | Path) -> Path:
    """Write a task as a YAML spec file that ``load_task_spec`` reads back to the same task."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(task_spec(task, path.parent), sort_keys=False, allow_unicode=True, width=120)
    path.write_text(text, encoding="utf-8")
    return path


# The built-in tasks: spec files like any other (data/tasks/<name>.yaml), loaded once.
TASKS = {name: load_task_spec(BUILTIN_SPECS / f"{name}.yaml") for name in ("support_tickets", "listings", "shop_chats")}
SUPPORT_TICKETS = TASKS["support_tickets"]
LISTINGS = TASKS["listings"]
CATEGORIES = SUPPORT_TICKETS.label_values["category"]
URGENCIES = SUPPORT_TICKETS.label_values["urgency"]


def raw_data_file(task: Task) -> Path:
    """The task's raw records file (its spec's ``data``).

    Raises:
        FileNotFoundError: the spec names no data file, or that file does not exist (naming the spec and key).
    """
    if task.data_file is None:
        raise FileNotFoundError(
            f"task spec {task.spec_file}: data: missing (name the raw records file, relative to the spec)"
        )
    if not task.data_file.is_file():
        raise FileNotFoundError(f"task spec {task.spec_file}: data: no such file {task.data_file}")
    return task.data_file


def is_spec_path(name_or_path: str | Path) -> bool:
    """Whether a ``--task``/``dataset`` value names a spec file rather than a built-in task."""
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text


def get_task(name_or_path: str | Path) -> Task:
    """A built-in task by name (``support_tickets``, ``listings``, ``shop_chats``) or a spec file's task by path."""
    if not isinstance(name_or_path, Path) and name_or_path in TASKS:
        return TASKS[name_or_path]
    if is_spec_path(name_or_path):
        return load_task_spec(name_or_path)
    raise KeyError(
        f"Unknown dataset/task '{name_or_path}'. Known: {', '.join(TASKS)}; or give the path of a task spec file "
        "(.yaml, see data/tasks/)"
    )
