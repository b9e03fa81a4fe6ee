"""The field-test set's two halves: one to choose on, one that is only reported.

A test set that decisions were made on stops being a test: the defaults, phrase banks and knobs that won on it won
partly by its own noise, so its score overstates what the model does on tickets nobody has looked at. (On
2026-12-04 the cpu-profile LoRA scored category 0.965 and urgency 0.855 on the whole field test, which had chosen
them, and 0.950 and 0.750 on a hidden hand-written set.) So each field-test record carries a ``half`` field,
assigned once and stratified by the task's label values: ``dev`` is where the course chooses (the quality-bar
benchmark's variants), ``test`` is what the lessons report and nothing is tuned on.

A field-test file with no ``half`` at all (a task of your own) is all ``test``: nothing was chosen on it.
``python -m ftlib.data.field_test FILE --task SPEC`` marks the records of a file that have no half yet, keeping the
halves already given (new tickets join without moving old ones).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

from ftlib.core.tasks import Task, get_task
from ftlib.data.records import DataError, numbered, read_records, write_jsonl

HALF_FIELD = "half"
HALVES = ("dev", "test")  # dev: choose on it; test: only report it


def _check_values(records: list[dict], source: str | Path) -> None:
    for line, record in numbered(records):
        if HALF_FIELD in record and record[HALF_FIELD] not in HALVES:
            raise DataError(source, line, HALF_FIELD, f"{record[HALF_FIELD]!r} is not one of {', '.join(HALVES)}")


def check_halves(records: list[dict], source: str | Path) -> bool:
    """Whether the records are split into halves: True when every record has a ``half``, False when none has.

    Raises:
        DataError: some records have a half and some not, or a half is not ``dev`` or ``test`` (file, line, field).
    """
    _check_values(records, source)
    marked = sum(HALF_FIELD in r for r in records)
    if 0 < marked < len(records):
        line = next(line for line, r in numbered(records) if HALF_FIELD not in r)
        raise DataError(
            source, line, HALF_FIELD, f"missing, while {marked} of {len(records)} records have one (mark them all)"
        )
    return marked > 0


def field_half(records: list[dict], half: str, source: str | Path = "<records>") -> list[dict]:
    """The records of one half, in file order (a file without halves: all of it is ``test``, none ``dev``)."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {', '.join(HALVES)}, got {half!r}")
    if not check_halves(records, source):
        return list(records) if half == "test" else []
    return [r for r in records if r[HALF_FIELD] == half]


def stratum(record: dict, task: Task) -> tuple:
    """The label values of a record: the halves are balanced within each."""
    return tuple(str(record.get(name)) for name in task.label_fields)


def assign_halves(records: list[dict], task: Task, seed: int = 0) -> list[dict]:
    """The records, each with a ``half``: those that have one keep it; the others are dealt out per stratum (the
    task's label values), in a seeded random order, each to the half that has fewer of that stratum so far (ties: the
    half with fewer records overall), so both halves keep the labels in proportion and differ in size by at most
    one record where no half was given before."""
    _check_values(records, getattr(records, "source", "<records>"))
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(HALVES, 0))
    sizes = dict.fromkeys(HALVES, 0)
    for record in records:
        if HALF_FIELD in record:
            counts[stratum(record, task)][record[HALF_FIELD]] += 1
            sizes[record[HALF_FIELD]] += 1
    rng = random.Random(seed)
    unmarked = [i for i, r in enumerate(records) if HALF_FIELD not in r]
    rng.shuffle(unmarked)
    out = [dict(r) for r in records]
    for index in unmarked:
        count = counts[stratum(out[index], task)]
        fewer = min(HALVES, key=lambda h: (count[h], sizes[h], rng.random()))
        out[index][HALF_FIELD] = fewer
        count[fewer] += 1
        sizes[fewer] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mark a field-test file's records with a dev or test half.")
    parser.add_argument("file", type=Path, help="the field-test JSONL file, rewritten in place")
    parser.add_argument("--task", default="support_tickets", help="built-in task name or task spec file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    records = read_records(args.file)
    marked = assign_halves(records, get_task(args.task), args.seed)
    write_jsonl(marked, args.file)
    new = sum(HALF_FIELD not in r for r in records)
    sizes = {h: sum(r[HALF_FIELD] == h for r in marked) for h in HALVES}
    print(f"{args.file}: {new} records newly marked; dev {sizes['dev']}, test {sizes['test']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
