"""Each command's preflight: every check on its inputs, made before anything heavy loads, reported at once.

A command collects problems into a ``Preflight`` (inputs, run folder, output path, numeric settings, device) and
calls ``finish()``, which raises ``PreflightError`` listing them all: ``python -m ftlib`` prints them and exits 2,
before a model, a tokenizer or even torch is imported. The checks that need the tokenizer (prompt lengths against
the model's context) run after the cheap ones pass, still before any weights load.

Nothing here writes: a refused command leaves every file as it was.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

# What a user can get wrong; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, NotADirectoryError)


class PreflightError(Exception):
    """Problems found before anything loaded, one line each: file, line and field, or the flag."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def report(self) -> str:
        """One ``error:`` line for one problem; a count and one ``  - `` line each for several."""
        if len(self.problems) == 1:
            return f"error: {self.problems[0]}"
        lines = [f"error: {len(self.problems)} problems (nothing was loaded or written):"]
        return "\n".join(lines + ["  - " + problem.replace("\n", "\n    ") for problem in self.problems])


class Preflight:
    """Collects a command's problems so that the user sees them all in one run, not one per attempt."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Run a check that raises on the first problem (``DataError``, ``ManifestError``...) and keep its message."""
        try:
            yield
        except USER_ERRORS as error:
            self.problems.append(str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error))

    @property
    def ok(self) -> bool:
        return not self.problems

    def finish(self) -> None:
        """Raise ``PreflightError`` with every problem found, if any."""
        if self.problems:
            raise PreflightError(list(self.problems))


def at_least(preflight: Preflight, flag: str, value: int | None, minimum: int = 1) -> None:
    """``flag`` must be ``minimum`` or more (None: not given, nothing to check)."""
    if value is not None and value < minimum:
        preflight.add(flag, f"must be >= {minimum}, got {value}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _blocking_file(path: Path) -> Path | None:
    """The first parent of ``path`` that exists and is not a folder (so nothing can be written under it)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _unwritable(path: Path) -> Path | None:
    """The nearest existing folder above ``path`` when this process may not write in it."""
    for parent in path.parents:
        if parent.exists():
            return None if os.access(parent, os.W_OK | os.X_OK) else parent
    return None


def output_file(
    preflight: Preflight, flag: str, path: Path, inputs: Mapping[str, Path | None], overwrite: bool
) -> None:
    """A file to write: not a folder, not under a file, writable, not one of ``inputs`` nor an existing file inside
    an input folder such as a run (never, even with ``--overwrite``), and new unless ``overwrite``."""
    path = Path(path)
    for input_flag, source in inputs.items():
        if source is None:
            continue
        source = Path(source)
        if _same_file(path, source) or path.resolve() == source.resolve():
            preflight.add(f"{flag} {path}", f"is the input {input_flag}: writing it would replace your data")
            return
        if source.is_dir() and path.exists() and source.resolve() in path.resolve().parents:
            preflight.add(f"{flag} {path}", f"is a file of the input {input_flag} {source}: write a new file instead")
            return
    if path.is_dir():
        preflight.add(f"{flag} {path}", "is a folder; give the path of a file to write")
    elif (blocker := _blocking_file(path)) is not None:
        preflight.add(f"{flag} {path}", f"{blocker} is a file, not a folder")
    elif (locked := _unwritable(path)) is not None:
        preflight.add(f"{flag} {path}", f"no permission to write in {locked}")
    elif path.exists() and not overwrite:
        preflight.add(f"{flag} {path}", "exists; pass --overwrite to replace it")


def output_run_folder(
    preflight: Preflight,
    flag: str,
    path: Path,
    inputs: Mapping[str, Path | None],
    overwrite: bool,
    marker: str = "manifest.json",
) -> None:
    """A run folder to write whole: not a file or under one, writable, holding none of ``inputs``, and new or
    empty unless it is an earlier run and ``overwrite`` is given (that run is then kept as ``<name>.previous``).

    A folder that is not a run (no ``marker`` file: ``manifest.json``, or a merge's ``merge.json``) but holds files
    is always refused: a run replaces its folder whole, and those files are the user's.
    """
    path = Path(path)
    for input_flag, source in inputs.items():
        if source is None or not Path(source).exists():
            continue
        source = Path(source).resolve()
        if source == path.resolve() or path.resolve() in source.parents:
            preflight.add(f"{flag} {path}", f"holds the input {input_flag} ({source}); the run would replace it")
            return
    if path.exists() and not path.is_dir():
        preflight.add(f"{flag} {path}", "is a file; a run writes a folder there")
    elif (blocker := _blocking_file(path)) is not None:
        preflight.add(f"{flag} {path}", f"{blocker} is a file, not a folder")
    elif (locked := _unwritable(path)) is not None:
        preflight.add(f"{flag} {path}", f"no permission to write in {locked}")
    elif path.is_dir() and any(path.iterdir()):
        if not (path / marker).is_file():
            preflight.add(
                f"{flag} {path}",
                f"holds files but is not an ftlib output (no {marker}); it would be replaced whole: pick a new folder",
            )
        elif not overwrite:
            preflight.add(
                f"{flag} {path}",
                f"holds an earlier output; pass --overwrite to replace it (it is kept as {path.name}.previous)",
            )


# -- run and model folders --------------------------------------------------------------------------------------


def check_run_source(run: str) -> None:
    """Refuse, before any model loads, a ``--run`` that is no folder, registry name or hub model.

    Only a string shaped like a hub id (``name`` or ``owner/name``, not starting with ``runs``, ``.`` or ``~``)
    is looked up: on the hub when it is reachable, else in the local hub cache. A missing path is never
    tried on the hub.

    Raises:
        FileNotFoundError: one line naming ``run``.
        ftlib.core.runs.ManifestError: a run folder whose manifest cannot be read.
    """
    from ftlib.core.runs import MANIFEST, load_run

    folder = Path(run).expanduser()
    if folder.is_dir():
        if (folder / MANIFEST).exists():
            load_run(folder)  # an unreadable or unknown-version manifest fails here, not after loading a model
        return
    from ftlib.core import runtime
    from ftlib.core.catalog import REGISTRY

    if run in REGISTRY:
        return
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", run) and not run.startswith(("runs", ".", "~")):
        from huggingface_hub import repo_exists, try_to_load_from_cache

        if runtime.hub_reachable():
            try:
                if repo_exists(run):
                    return
            except Exception:  # an invalid id or a network failure: neither makes it loadable
                pass
        elif isinstance(try_to_load_from_cache(run, "config.json"), str):  # offline, but in the hub cache
            return
    raise FileNotFoundError(f"no run folder or registry model named {run}")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot load (missing, truncated, not safetensors), read from its header alone."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return "missing"
    try:
        with safe_open(str(path), "numpy"):  # validates the header and that the file covers every tensor
            pass
    except (SafetensorError, OSError) as error:
        return f"damaged or cut short ({error}); copy it again or retrain"
    return None


def _json_object_problem(path: Path, required: tuple[str, ...] = ()) -> str | None:
    if not path.is_file():
        return "missing"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"not valid JSON ({error})"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    missing = [key for key in required if key not in value]
    return f"missing {', '.join(repr(key) for key in missing)}" if missing else None


def _weights_problems(folder: Path) -> list[str]:
    """A model folder's safetensors weights (one file, or the shards its index names)."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if index.is_file():
        problem = _json_object_problem(index, ("weight_map",))
        if problem:
            return [f"{index}: {problem}"]
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [f"{folder / shard}: {p}" for shard in shards if (p := safetensors_problem(folder / shard))]
    if single.is_file():
        problem = safetensors_problem(single)
        return [f"{single}: {problem}"] if problem else []
    if any(folder.glob("*.bin")):
        return []  # PyTorch pickles: transformers reads them; their integrity shows only on load
    return [f"{folder}: no model weights (model.safetensors) there"]


def model_folder_problems(folder: Path) -> list[str]:
    """A plain model folder (``save_pretrained``): config, weights and tokenizer files."""
    problems = []
    if problem := _json_object_problem(folder / "config.json", ("model_type",)):
        problems.append(f"{folder / 'config.json'}: {problem}")
    problems += _weights_problems(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the tokenizer there too")
    return problems


def adapter_folder_problems(folder: Path) -> list[str]:
    """A peft adapter folder: ``adapter_config.json`` and its weights."""
    if not folder.is_dir():
        return [f"{folder}: adapter folder not found"]
    problems = []
    if problem := _json_object_problem(folder / "adapter_config.json", ("peft_type",)):
        problems.append(f"{folder / 'adapter_config.json'}: {problem}")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file() and (folder / "adapter_model.bin").is_file():
        return problems
    if problem := safetensors_problem(weights):
        problems.append(f"{weights}: {problem}")
    return problems


def run_folder(preflight: Preflight, flag: str, run: str | Path) -> None:
    """``--run``: a training run folder whose files can all load, a plain model folder, a registry model or a hub
    model. A run's base model is checked the same way."""
    from ftlib.core.runs import MANIFEST, load_run

    folder = Path(run).expanduser()
    if not folder.is_dir():
        with preflight.checking():
            check_run_source(str(run))
        return
    if not (folder / MANIFEST).is_file():
        if not (folder / "config.json").exists():
            preflight.add(
                f"{flag} {folder}",
                f"not a run folder (no {MANIFEST}) and not a model folder (no config.json)"
                + (": it is empty" if not any(folder.iterdir()) else ""),
            )
            return
        preflight.problems += model_folder_problems(folder)
        return
    try:
        record = load_run(folder)
    except ValueError as error:  # ManifestError
        preflight.problems.append(str(error))
        return
    weights = folder / record.weights_folder
    if record.method == "full":
        preflight.problems += model_folder_problems(weights)
        return
    preflight.problems += adapter_folder_problems(weights)
    base = Path(record.base_model).expanduser()
    if base.is_dir():
        preflight.problems += [f"{problem} (the base model of {folder})" for problem in model_folder_problems(base)]
    else:
        with preflight.checking():
            check_run_source(record.base_model)


def base_model_name(run: str | Path) -> str:
    """The model whose tokenizer and context a ``--run`` uses: a run's base (or its full weights), else ``run``."""
    from ftlib.core.runs import MANIFEST, load_run

    folder = Path(run).expanduser()
    if (folder / MANIFEST).is_file():
        record = load_run(folder)
        return str(folder / record.weights_folder) if record.method == "full" else record.base_model
    return str(run)


def device(preflight: Preflight, flag: str, choice: str) -> None:
    """``--device cuda`` needs a GPU that torch can see."""
    if choice == "cuda":
        import torch

        if not torch.cuda.is_available():
            preflight.add(f"{flag} cuda", "torch sees no CUDA GPU here; use --device cpu (or auto)")


# -- inputs -----------------------------------------------------------------------------------------------------

MAX_RECORD_PROBLEMS = 5  # a file with many bad records shows the first few and a count, not a screenful


def task_of(preflight: Preflight, name: str):
    """The task (built-in or spec file), or None with the problem added: the record checks need it."""
    from ftlib.core.tasks import get_task

    with preflight.checking():
        return get_task(name)
    return None


def records_to_answer(
    preflight: Preflight,
    flag: str,
    source: Path,
    task,
    split: str | None = None,
    revision: str | None = None,
    labels: bool = False,
    drop_invalid_labels: bool = False,
    training: bool = False,
):
    """Read ``source`` and check every record: its input (``generate``), also its labels (``evaluate``: ``labels``),
    or the whole example (``training``). Up to ``MAX_RECORD_PROBLEMS`` bad records are listed, then a count.

    Returns:
        The records (``Records``: lines and source kept), or None when the file cannot be read or a record is bad.
    """
    from ftlib.data.records import DataError, check_input, check_labels, numbered, read_records, to_messages

    try:
        records = read_records(source, split, revision)
    except DataError as error:
        preflight.problems.append(str(error) if str(error).startswith(str(source)) else f"{flag}: {error}")
        return None
    if task is None:
        return None
    bad = 0
    for line, record in numbered(records):
        try:
            (to_messages if training else check_input)(record, task, records.source, line)
            text = record.get(task.input_field)
            if isinstance(text, str) and not text.strip():  # curation calls this junk; a command refuses it
                raise DataError(records.source, line, task.input_field, "empty text: there is nothing to answer")
            if labels and not task.input_is_chat:  # a reference answer that is there must be text
                for field in task.answer_fields:
                    if field in record and not isinstance(record[field], str):
                        got = type(record[field]).__name__
                        raise DataError(records.source, line, field, f"expected a string (the reference), got {got}")
            problem = task.label_error(record) if (labels or training) and not drop_invalid_labels else None
            if problem is not None:
                raise DataError(records.source, line, *problem)
        except DataError as error:
            bad += 1
            if bad <= MAX_RECORD_PROBLEMS:
                preflight.problems.append(str(error))
    if bad > MAX_RECORD_PROBLEMS:
        preflight.add(records.source, f"{bad - MAX_RECORD_PROBLEMS} more record(s) with problems")
    if bad:
        return None
    if (labels or training) and drop_invalid_labels:
        kept, dropped = check_labels(records, task, records.source, drop=True)
        if dropped:
            print(
                f"{records.source}: dropped {dropped} of {len(records)} record(s) with a label outside the "
                f"{task.name} label sets (--drop-invalid-labels)"
            )
        if not kept:
            preflight.add(records.source, "no records left after dropping those with invalid labels")
            return None
        return kept
    return records


# Chat templates add a few tokens around each message (role headers, turn markers); 64 is far above any
# mainstream template's share, so a prompt whose text bytes plus 64 per message fit needs no tokenizer to prove it:
# byte-level BPE and SentencePiece with byte fallback never make more tokens than the text has bytes.
TEMPLATE_TOKENS_PER_MESSAGE = 64


def _token_bound(messages: list[dict]) -> int:
    return sum(len(str(m["content"]).encode("utf-8")) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)


def fit_context(
    preflight: Preflight,
    records,
    task,
    run: str | Path,
    source: str,
    max_new_tokens: int,
    truncate: bool,
):
    """Check every prompt, plus ``max_new_tokens``, against the model's context (``max_position_embeddings``).

    Prompts that clearly fit are passed without a tokenizer (``_token_bound``); the others are tokenized with the
    real chat template. Too long: a problem per record (the first few), or with ``truncate`` the record's input
    text is cut, from its end, to fit, and the count is printed.

    Returns:
        The records, with cut inputs where ``truncate`` cut them.
    """
    from transformers import AutoConfig

    from ftlib.data.records import Records, location, numbered
    from ftlib.engine.models import resolve_model_source

    name = base_model_name(run)
    context = getattr(AutoConfig.from_pretrained(resolve_model_source(name, source)), "max_position_embeddings", None)
    if not context:
        return records
    limit = context - max_new_tokens
    suspects = [(line, r) for line, r in numbered(records) if _token_bound(task.prompt_messages(r)) > limit]
    if not suspects:
        return records
    from ftlib.data.batches import prompt_text
    from ftlib.engine.models import load_tokenizer

    tokenizer = load_tokenizer(name, source)

    def length(record: dict) -> int:
        return len(tokenizer(prompt_text(tokenizer, task.prompt_messages(record)), add_special_tokens=False).input_ids)

    too_long = [(line, record, n) for line, record in suspects if (n := length(record)) > limit]
    if not too_long:
        return records
    plain = not (task.input_is_chat or task.input_is_object)
    if not truncate or not plain:
        advice = "shorten it, or pass --truncate-long-inputs" if plain else "shorten it"
        for line, _, n in too_long[:MAX_RECORD_PROBLEMS]:
            preflight.add(
                f"{location(records.source, line)}, field '{task.input_field}'",
                f"the prompt is {n:,} tokens; the model's context of {context:,} leaves {limit:,} beside "
                f"--max-new-tokens {max_new_tokens}: {advice}",
            )
        if len(too_long) > MAX_RECORD_PROBLEMS:
            preflight.add(records.source, f"{len(too_long) - MAX_RECORD_PROBLEMS} more prompt(s) too long")
        return records
    cut = {id(record): record for _, record, _ in too_long}
    fitted = Records(lines=list(getattr(records, "lines", range(1, len(records) + 1))), source=records.source)
    for record in records:
        if id(record) in cut:
            record = dict(record)
            ids = tokenizer(record[task.input_field], add_special_tokens=False).input_ids
            while (over := length(record) - limit) > 0 and ids:
                ids = ids[: max(0, len(ids) - over)]
                record[task.input_field] = tokenizer.decode(ids)
        fitted.append(record)
    print(
        f"{records.source}: cut {len(cut)} input(s) from the end to fit the model's context of {context:,} tokens "
        f"(--truncate-long-inputs)"
    )
    return fitted
