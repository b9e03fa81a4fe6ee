"""Reading, validating, splitting and tokenizing fine-tuning data."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ftlib.core import fileio
from ftlib.core.runtime import cache_dir, hub_reachable
from ftlib.core.tasks import Task

# Sources whose records are numbered by row, not by text line: Parquet, and saved or hub splits (``name[split]``).
# CSV is text: its records are numbered by the line where each row starts, as ``ftlib.measure.review`` numbers them.
TABULAR_SUFFIXES = (".parquet",)


def location(path: str | Path, line: int | None = None) -> str:
    """``file, line N`` (or ``, row N`` for Parquet or a dataset split): where a record is, for messages."""
    path = str(path)
    tabular = path.endswith("]") or Path(path).suffix.lower() in TABULAR_SUFFIXES
    return path + (f", {'row' if tabular else 'line'} {line}" if line else "")


class DataError(ValueError):
    """A problem in an input file, located by file, line (or row) and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        where = location(self.path, line) + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class Records(list):
    """Records read from a file, remembering the file line (or row) each one came from (blank lines are skipped).

    ``source`` is the name to give errors about them (the file, or ``name[split]`` for a dataset split).
    """

    def __init__(self, records=(), lines: list[int] | None = None, source: str = "<records>"):
        super().__init__(records)
        self.lines = lines if lines is not None else list(range(1, len(self) + 1))
        self.source = source


def numbered(records: list[dict]):
    """``(line, record)`` pairs: the file line where ``read_jsonl`` found it, else the 1-based position."""
    lines = getattr(records, "lines", None)
    if lines is None or len(lines) != len(records):
        lines = range(1, len(records) + 1)
    return zip(lines, records)


def read_jsonl(path: str | Path) -> Records:
    """Read a JSONL file of objects, one per line (blank lines are skipped; ``.lines`` keeps line numbers).

    Raises:
        DataError: the file is missing, empty, not UTF-8, or a line is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte {error.start}); re-save the file as UTF-8") from None
    records = Records(source=str(path))
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, number, None, f"not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(value, dict):
            raise DataError(path, number, None, f"expected a JSON object, got {type(value).__name__}")
        records.append(value)
        records.lines.append(number)
    if not records:
        raise DataError(path, None, None, "the file holds no records")
    return records


def read_records(source: str | Path, split: str | None = None, revision: str | None = None) -> Records:
    """Read records from a JSONL, JSON, CSV or Parquet file, a folder saved by ``datasets``, or a hub dataset id.

    JSONL and JSON are parsed record by record, so each record keeps exactly its own fields: Arrow would give
    every record the union of all fields (absent ones as null), hiding the missing fields curation must find.
    CSV, Parquet, saved folders and hub datasets go through ``datasets``: memory-mapped Arrow, cached under
    ``ftlib.core.runtime.cache_dir()/datasets``, never beside the data, which is only read. A null value is an absent
    field (Arrow writes one for every field a record lacks); a CSV cell is kept as text, exactly as written.

    ``.lines`` holds each record's file line (JSONL; JSON and CSV: the line where it starts) or its 1-based row
    (Parquet, datasets); ``.source`` names it in errors (``name[split]`` for splits).

    Args:
        split: the split of a saved ``DatasetDict`` or hub dataset (default ``train``).
        revision: a hub dataset's branch, tag or commit.

    Raises:
        DataError: the source is missing or unreadable, holds no records, or is a hub id while the hub is offline.
    """
    path = Path(source)
    if path.is_dir():
        if revision is not None:
            raise DataError(path, None, None, "a revision applies to hub datasets, not to a local folder")
        return _read_saved(path, split)
    if path.is_file() or path.suffix.lower() in (".jsonl", ".json", *TABULAR_SUFFIXES) or path.is_absolute():
        if split is not None or revision is not None:
            raise DataError(path, None, None, "a split or revision applies to datasets, not to a single file")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in TABULAR_SUFFIXES:
            return _read_table(_load(path, "parquet", data_files=str(path), split="train"), str(path))
        if suffix == ".json" and path.is_file() and path.read_bytes()[:64].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
            return _read_json_array(path)
        return read_jsonl(path)
    return _read_hub(str(source), split or "train", revision)


def _load(path: str | Path, builder: str, **options):
    """``datasets.load_dataset`` into ftlib's cache, quietly; any failure becomes a ``DataError`` on ``path``."""
    import datasets

    were_shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(builder, cache_dir=str(cache_dir() / "datasets"), **options)
    except Exception as error:  # datasets wraps parser errors (pandas, pyarrow) in its own types
        cause = error.__cause__ or error
        raise DataError(path, None, None, f"could not be read ({type(cause).__name__}: {cause})") from None
    finally:
        if were_shown:
            datasets.enable_progress_bars()


def _without_nulls(value):
    """A row value with null fields left out, at every depth: Arrow's stand-in for an absent field."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _read_table(dataset, source: str, lines: list[int] | None = None, skip_blank: bool = False) -> Records:
    """A ``datasets.Dataset``'s rows as records, read in Arrow batches, numbered by ``lines`` (else 1, 2, ...)."""
    records = Records(lines=[], source=source)
    numbers = iter(lines or range(1, len(dataset) + 1))
    for batch in dataset.iter(batch_size=10_000):  # bounds the Python copies held at once, not the result
        for values, number in zip(zip(*batch.values()), numbers):
            record = _without_nulls(dict(zip(batch.keys(), values)))
            if not (skip_blank and not any(record.values())):
                records.append(record)
                records.lines.append(number)
    if not records:
        raise DataError(source, None, None, "the file holds no records")
    return records


def _read_csv(path: Path) -> Records:
    """A CSV file with a header row, every cell as text ("007" stays "007", "n/a" stays "n/a").

    A row with fewer cells than the header lacks the fields of its missing cells (an empty cell is ""); a row
    with more is an error naming its line.
    """
    import datasets

    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    starts: list[int] = []  # the line where each row starts: a quoted cell may span lines
    short: dict[int, int] = {}  # line -> cells, for rows with fewer cells than the header: their fields are absent
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            start = reader.line_num + 1
            for cells in reader:
                if header and len(cells) > len(header):
                    raise DataError(path, start, None, f"{len(cells)} cells for the header's {len(header)} columns")
                if header and cells and len(cells) < len(header):
                    short[start] = len(cells)
                starts.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as error:
        raise DataError(path, None, None, f"not valid UTF-8 (byte {error.start}); re-save the file as UTF-8") from None
    except csv.Error as error:
        raise DataError(path, start, None, f"not valid CSV ({error})") from None
    if not header:
        raise DataError(path, None, None, "the file holds no records")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(path, 1, repeated[0], "the column name appears more than once in the header")
    features = datasets.Features({name: datasets.Value("string") for name in header})
    dataset = _load(
        path,
        "csv",
        data_files=str(path),
        split="train",
        features=features,
        keep_default_na=False,  # pandas would read "NA", "null", "n/a" and empty cells as missing
        na_filter=False,
        skip_blank_lines=False,  # a row for each of csv's rows, so that ``starts`` lines up; skipped below
    )
    if len(dataset) != len(starts):
        raise DataError(path, None, None, f"{len(dataset)} rows read but {len(starts)} rows found: check the quoting")
    records = _read_table(dataset, str(path), starts, skip_blank=True)
    for line, record in zip(records.lines, records):
        for name in header[short.get(line, len(header)) :]:
            del record[name]  # pandas filled the cells the row lacks with "": they are missing fields
    return records


_SPACE = re.compile(r"[ \t\r\n]*")


def _read_json_array(path: Path) -> Records:
    """A JSON file holding one array of objects, each record numbered by the line where it starts."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(path, None, None, f"not valid UTF-8 (byte {error.start}); re-save the file as UTF-8") from None
    decoder = json.JSONDecoder()
    records = Records(lines=[], source=str(path))
    position = _SPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    while text[position : position + 1] != "]":
        line, counted = line + text.count("\n", counted, position), position
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise DataError(path, error.lineno, None, f"not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(value, dict):
            raise DataError(path, line, None, f"expected a JSON object, got {type(value).__name__}")
        records.append(value)
        records.lines.append(line)
        position = _SPACE.match(text, position).end()
        if text[position : position + 1] == ",":
            position = _SPACE.match(text, position + 1).end()
            if text[position : position + 1] == "]":  # JSON allows no trailing comma; Python and JavaScript do
                line += text.count("\n", counted, position)
                raise DataError(path, line, None, "not valid JSON (a ',' before the closing ']')")
        elif text[position : position + 1] != "]":
            line += text.count("\n", counted, position)
            raise DataError(path, line, None, "not valid JSON (expected ',' or ']' after an array item)")
    if text[position + 1 :].strip():
        raise DataError(path, None, None, "not valid JSON (text after the closing ']')")
    if not records:
        raise DataError(path, None, None, "the file holds no records")
    return records


def _read_saved(path: Path, split: str | None) -> Records:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` (memory-mapped, not copied)."""
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(path, None, None, "not a folder saved by datasets' save_to_disk") from None
    if isinstance(saved, datasets.DatasetDict):
        split = split or ("train" if "train" in saved or len(saved) != 1 else next(iter(saved)))
        if split not in saved:
            raise DataError(path, None, None, f"no split {split!r}; the splits are {sorted(saved)}")
        saved = saved[split]
    elif split is not None and split != (saved.split or split):
        raise DataError(path, None, None, f"the folder holds the {saved.split!r} split, not {split!r}")
    return _read_table(saved, f"{path}[{split or saved.split or 'all'}]")


def _read_hub(name: str, split: str, revision: str | None) -> Records:
    """A hub dataset's split, where the hub is reachable; offline, a clear error instead of a long retry."""
    source = f"{name}[{split}]"
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        raise DataError(name, None, None, "file not found")
    if not hub_reachable():
        raise DataError(
            source,
            None,
            None,
            "no such local file or folder, and the Hugging Face Hub is not reachable (offline). Where it is, "
            f"save the dataset with datasets.load_dataset({name!r}, split={split!r}).save_to_disk(FOLDER) "
            "and pass FOLDER",
        )
    return _read_table(_load(source, name, split=split, revision=revision), source)


def _require_str(record: dict, field: str, source: str, line: int | None) -> str:
    if field not in record:
        raise DataError(source, line, field, "missing field")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(source, line, field, f"expected a string, got {type(value).__name__}")
    return value


CHAT_ROLES = ("system", "user", "assistant")


def check_chat(
    record: dict, field: str, source: str = "<records>", line: int | None = None, answered: bool = True
) -> list[dict]:
    """A record's chat turns, checked: {role, content} objects, roles known, a user turn, the last the assistant's
    (unless not ``answered``: a new chat waiting for its answer).

    Raises:
        DataError: naming the turn (e.g. ``messages[2].role``) and what is wrong with it.
    """
    if field not in record:
        raise DataError(source, line, field, "missing field")
    turns = record[field]
    if not isinstance(turns, list) or not turns or not all(isinstance(m, dict) for m in turns):
        raise DataError(source, line, field, "expected a non-empty list of {role, content} objects")
    for index, turn in enumerate(turns):
        for key in ("role", "content"):
            if not isinstance(turn.get(key), str):
                got = "missing" if key not in turn else f"expected a string, got {type(turn[key]).__name__}"
                raise DataError(source, line, f"{field}[{index}].{key}", got)
        if turn["role"] not in CHAT_ROLES:
            raise DataError(
                source, line, f"{field}[{index}].role", f"{turn['role']!r} is not one of {', '.join(CHAT_ROLES)}"
            )
    if not any(turn["role"] == "user" for turn in turns):
        raise DataError(source, line, field, "no user turn")
    if answered and turns[-1]["role"] != "assistant":
        raise DataError(source, line, f"{field}[{len(turns) - 1}].role", "the last turn must be the assistant's answer")
    return turns


def check_input(record: dict, task: Task, source: str = "<records>", line: int | None = None) -> None:
    """Check the input of a record to answer (its answer may be absent): what ``generate`` and ``evaluate`` need.

    Raises:
        DataError: naming the file, line and field.
    """
    if task.input_is_chat:
        check_chat(record, task.input_field, source, line, answered=False)
    elif task.input_is_object:
        if not isinstance(record.get(task.input_field), dict) or not record[task.input_field]:
            problem = "missing field" if task.input_field not in record else "expected a non-empty JSON object"
            raise DataError(source, line, task.input_field, problem)
    else:
        _require_str(record, task.input_field, source, line)


def to_messages(
    record: dict, task: Task | None = None, source: str = "<records>", line: int | None = None
) -> list[dict]:
    """Turn a record of any supported shape into chat messages ending with the assistant's answer.

    Shapes: ``messages`` (chat), ``prompt``/``completion``, ``instruction``/``input``/``output``,
    or the fields of ``task`` (e.g. ``ticket`` -> JSON answer).
    """
    if task is not None and task.input_is_chat:
        check_chat(record, task.input_field, source, line)
        return task.to_messages(record)
    if "messages" in record:
        return check_chat(record, "messages", source, line)
    if "prompt" in record or "completion" in record:
        prompt = _require_str(record, "prompt", source, line)
        return [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _require_str(record, "completion", source, line)},
        ]
    if "instruction" in record:
        instruction = _require_str(record, "instruction", source, line)
        extra = record.get("input") or ""
        user = f"{instruction}\n\n{extra}" if extra else instruction
        return [
            {"role": "user", "content": user},
            {"role": "assistant", "content": _require_str(record, "output", source, line)},
        ]
    if task is not None:
        check_input(record, task, source, line)
        for field in task.answer_fields:
            _require_str(record, field, source, line)
        return task.to_messages(record)
    raise DataError(
        source, line, None, "unknown record shape: expected 'messages', 'prompt'/'completion' or 'instruction'/'output'"
    )


@dataclass
class Rejected:
    """A record that failed validation, with the reason."""

    line: int
    reason: str
    record: dict


def validate_records(records: list[dict], task: Task, source: str = "<records>") -> tuple[list[dict], list[Rejected]]:
    """Keep the records that have every field of ``task`` as text, rejecting the rest with a reason."""
    valid, rejected = [], []
    for line, record in numbered(records):
        try:
            to_messages(record, task, source, line)
        except DataError as error:
            rejected.append(Rejected(line, str(error), record))
        else:
            valid.append(record)
    return valid, rejected


def check_labels(records: list[dict], task: Task, source: str = "<records>", drop: bool = False) -> tuple[Records, int]:
    """The records whose closed-set labels (``task.label_values``) are all in their label sets.

    Returns:
        ``(kept, dropped)``: the records kept (with their file lines) and how many were dropped.

    Raises:
        DataError: at the first out-of-schema label, with its line and field, unless ``drop``.
    """
    kept, dropped = Records(lines=[], source=getattr(records, "source", source)), 0
    for line, record in numbered(records):
        problem = task.label_error(record)
        if problem is None:
            kept.append(record)
            kept.lines.append(line)
        elif drop:
            dropped += 1
        else:
            raise DataError(source, line, *problem)
    return kept, dropped


def normalize_text(text: str) -> str:
    """Lower case with collapsed whitespace: the key for exact-duplicate detection."""
    return " ".join(text.lower().split())


def stratified_split(
    records: list[dict], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), key=None, seed: int = 0
) -> dict[str, list[dict]]:
    """Split into train/val/test, keeping each stratum's share the same in every split.

    Args:
        key: a field name, or a function of a record, giving its stratum; None for a plain random split.
    """
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[str(key(record) if callable(key) else record.get(key)) if key else ""].append(record)
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for name in sorted(groups):
        group = groups[name][:]
        rng.shuffle(group)
        n_val = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        splits["test"] += group[:n_test]
        splits["val"] += group[n_test : n_test + n_val]
        splits["train"] += group[n_test + n_val :]
    for part in splits.values():
        rng.shuffle(part)
    return splits


def label_counts(records: list[dict], field) -> dict[str, int]:
    """Counts of a field's values (or of ``field(record)`` when it is a function), sorted by value."""
    return dict(sorted(Counter(str(field(r) if callable(field) else r.get(field)) for r in records).items()))


def records_hash(records: list[dict]) -> str:
    """A stable hash of a list of records (order-sensitive), for run manifests."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    """Write records atomically: a crash never leaves a half-written file in place."""
    return fileio.write_jsonl(records, path)
