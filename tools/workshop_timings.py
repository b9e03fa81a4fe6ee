"""Print a Markdown table of measured notebook times from ``curriculum_timings.json`` files.

``python -m ftlib curriculum`` writes ``<run dir>/curriculum_timings.json`` when every notebook it ran has
finished: one JSON object, notebook name (the file's stem, e.g. ``03_lora``) to wall seconds. Give this script one
or more of them, each optionally as ``LABEL=PATH`` (the column's heading; default: the run folder's name):

    .venv/bin/python tools/workshop_timings.py runs/support_tickets-cpu/curriculum_timings.json
    .venv/bin/python tools/workshop_timings.py "smoke=runs/support_tickets-smoke/curriculum_timings.json" \
        "cpu, 2 cores=runs/support_tickets-cpu/curriculum_timings.json"

One row per notebook (the curriculum's notebooks in order, then any other name found), one column per file, and a
"notebooks in all" row. A notebook missing from a file (a ``--only`` run) reads "not run". Only what the files
hold is printed: the figures are measurements of the machine that ran them, so say which machine beside the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ftlib.course.curriculum import NOTEBOOKS  # noqa: E402


def read_timings(path: Path) -> dict[str, float]:
    """One ``curriculum_timings.json``: notebook name -> seconds.

    Raises:
        ValueError: the file is not JSON, or not an object of names to non-negative numbers (naming the file).
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of notebook name -> seconds, got {type(values).__name__}")
    for name, seconds in values.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"{path}: {name}: expected seconds (a non-negative number), got {json.dumps(seconds)}")
    return {name: float(seconds) for name, seconds in values.items()}


def format_seconds(seconds: float) -> str:
    """``10.5 s`` under a minute, else ``1206 s (20 min 6 s)``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{whole} s ({minutes} min {rest} s)"


def timings_table(columns: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per notebook, one column per label, and the total of the notebooks each ran."""
    names = list(NOTEBOOKS) + sorted({name for timings in columns.values() for name in timings} - set(NOTEBOOKS))
    names = [name for name in names if any(name in timings for timings in columns.values())]
    lines = ["| notebook | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name in names:
        cells = [format_seconds(timings[name]) if name in timings else "not run" for timings in columns.values()]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    totals = [format_seconds(sum(timings.values())) for timings in columns.values()]
    lines.append("| notebooks in all | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def parse_argument(argument: str) -> tuple[str, Path]:
    """``LABEL=PATH`` or ``PATH`` (the label is then the run folder's name, e.g. ``support_tickets-cpu``)."""
    label, separator, path = argument.rpartition("=")
    if not separator:
        path = argument
        label = Path(path).resolve().parent.name
    return label, Path(path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    columns = {}
    try:
        for argument in argv:
            label, path = parse_argument(argument)
            if not path.is_file():
                raise ValueError(
                    f"{path}: file not found (python -m ftlib curriculum writes it when all notebooks ran)"
                )
            unique, n = label, 2
            while unique in columns:  # two run folders of the same name: keep both columns
                unique, n = f"{label} ({n})", n + 1
            columns[unique] = read_timings(path)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(timings_table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
