"""The curation pipeline: every step small, testable and reported.

Order matters: layouts and label spellings are normalized first (so good records are not dropped
for their shape), then records are validated, cleaned of markup, filtered for quality and language,
scrubbed of PII, de-duplicated (exactly, then approximately with MinHash LSH), filtered by token
length and split without leakage.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from ftlib.core.tasks import Task
from ftlib.data.batches import tokenize_example
from ftlib.data.cleaning import is_junk, non_english, scrub_pii, strip_markup
from ftlib.data.dedup import dedup_key, near_duplicate_groups
from ftlib.data.records import DataError, Records, location, numbered, to_messages

# ---------------------------------------------------------------- layouts and labels

LABEL_SYNONYMS = {
    "category": {
        "bill": "billing",
        "billing issue": "billing",
        "payment": "billing",
        "payments": "billing",
        "internet down": "outage",
        "no service": "outage",
        "service outage": "outage",
        "slow speed": "slow_speed",
        "slow-speed": "slow_speed",
        "slowspeed": "slow_speed",
        "speed": "slow_speed",
        "equipment": "hardware",
        "device": "hardware",
        "login": "account",
        "accounts": "account",
        "cancel": "cancellation",
        "cancellations": "cancellation",
        "cancelation": "cancellation",
    },
    "urgency": {
        "urgent": "high",
        "critical": "high",
        "hi": "high",
        "p1": "high",
        "normal": "medium",
        "med": "medium",
        "p2": "medium",
        "lo": "low",
        "minor": "low",
        "p3": "low",
    },
}


@dataclass
class RecordOutcome:
    """What the pipeline did to one input record (by its line in the raw file)."""

    line: int
    id: str | None
    status: str = "kept"  # kept | dropped
    step: str | None = None  # the step that dropped it
    reason: str | None = None
    changes: list[str] = field(default_factory=list)  # steps that modified it


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def from_sharegpt(turns) -> list[dict] | None:
    """ShareGPT turns (``{"from": "human"|"gpt"|"system", "value": ...}``) as ``{role, content}`` messages;
    None when ``turns`` are not in that form."""
    if not isinstance(turns, list) or not turns:
        return None
    if not all(isinstance(t, dict) and set(t) >= {"from", "value"} and t["from"] in SHAREGPT_ROLES for t in turns):
        return None
    return [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in turns]


def normalize_layout(record: dict, task: Task) -> tuple[dict, bool]:
    """Map a known alternative key layout onto the task's fields; returns ``(record, changed)``.

    A chat task also takes ShareGPT-style turns (under the input field or an alias, or ``conversations``).
    """
    if task.input_is_chat:
        return _normalize_chat_layout(record, task)
    if all(f in record for f in (task.input_field, *task.answer_fields)):
        return record, False
    mapped = dict(record)
    nested = {}
    for key in list(mapped):
        if isinstance(mapped[key], dict) and key in task.nested_keys:
            nested.update(mapped.pop(key))
    mapped.update({k: v for k, v in nested.items() if k not in mapped})
    for canonical, aliases in task.field_aliases.items():
        if canonical not in mapped:
            for alias in aliases:
                if alias in mapped:
                    mapped[canonical] = mapped.pop(alias)
                    break
    changed = mapped != record
    return mapped, changed


def _normalize_chat_layout(record: dict, task: Task) -> tuple[dict, bool]:
    field_name = task.input_field
    mapped = dict(record)
    if field_name not in mapped:
        for alias in (*task.field_aliases.get(field_name, ()), "conversations"):
            if alias in mapped:
                mapped[field_name] = mapped.pop(alias)
                break
    turns = from_sharegpt(mapped.get(field_name))
    if turns is not None:
        mapped[field_name] = turns
    return mapped, mapped != record


def _map_turns(record: dict, task: Task, function, roles=("user", "assistant", "system")) -> tuple[dict, bool]:
    """Apply ``function(text) -> (text, changed)`` to a chat's turns of ``roles``; returns ``(record, changed)``."""
    turns, changed = [], False
    for turn in task.chat(record):
        if turn["role"] in roles:
            text, did = function(turn["content"])
            if did:
                turn, changed = {**turn, "content": text}, True
        turns.append(turn)
    return ({**record, task.input_field: turns}, True) if changed else (record, False)


def normalize_label(field_name: str, value, allowed: tuple[str, ...]) -> str | None:
    """The canonical spelling of a label, or None when it is outside the schema.

    A synonym counts only where its canonical label is in ``allowed``: a task whose ``category`` set has no
    ``slow_speed`` drops a "speed" ticket instead of keeping it under a label the task does not have.
    """
    if not isinstance(value, str):
        return None
    key = " ".join(value.strip().lower().replace("_", " ").split())
    if key.replace(" ", "_") in allowed:
        return key.replace(" ", "_")
    canonical = LABEL_SYNONYMS.get(field_name, {}).get(key)
    return canonical if canonical in allowed else None


# ---------------------------------------------------------------- the pipeline


@dataclass
class CurationResult:
    """Curated records, what happened to every raw record, and step-by-step counts."""

    records: list[dict]
    outcomes: list[RecordOutcome]
    steps: list[dict]  # {"step", "dropped", "changed", "remaining"} in pipeline order
    pii_counts: Counter
    token_lengths: list[int] = field(default_factory=list)  # of every record that reached the length filter

    def dropped_by(self, step: str) -> list[RecordOutcome]:
        return [o for o in self.outcomes if o.step == step]

    def changed_by(self, step: str) -> list[RecordOutcome]:
        return [o for o in self.outcomes if step in o.changes]

    def report(self) -> dict:
        return {
            "raw": len(self.outcomes),
            "kept": len(self.records),
            "steps": self.steps,
            "pii_replaced": dict(self.pii_counts),
            "dropped_examples": {
                s["step"]: [o.reason for o in self.dropped_by(s["step"])][:5] for s in self.steps if s["dropped"]
            },
        }


@dataclass(frozen=True)
class StepResult:
    """What one step did to the records it was given.

    Positions are indices into the step's input. ``kept`` holds the surviving records, as the step left them,
    with their file lines (``ftlib.data.records.Records``); the two counters are filled by the steps that measure them.
    """

    kept: Records
    dropped: dict[int, str] = field(default_factory=dict)  # position -> why it was dropped
    changed: set[int] = field(default_factory=set)  # positions of kept records the step modified
    pii_counts: Counter = field(default_factory=Counter)  # step_pii: placeholders put in, by type
    token_lengths: list[int] = field(default_factory=list)  # step_length: every record's length in tokens


def _subset(records: list[dict], positions: list[int], replaced: dict[int, dict] | None = None) -> Records:
    """The records at ``positions`` (or their ``replaced`` versions), keeping their file lines."""
    replaced = replaced or {}
    lines = [line for line, _ in numbered(records)]
    return Records([replaced.get(p, records[p]) for p in positions], [lines[p] for p in positions])


def _each(records: list[dict], check) -> StepResult:
    """Apply ``check(line, record) -> (record, changed)``, or a str (the reason to drop it), to every record."""
    dropped, changed, replaced = {}, set(), {}
    for position, (line, record) in enumerate(numbered(records)):
        verdict = check(line, record)
        if isinstance(verdict, str):
            dropped[position] = verdict
            continue
        new_record, did_change = verdict
        if did_change:
            changed.add(position)
            replaced[position] = new_record
    kept = [p for p in range(len(records)) if p not in dropped]
    return StepResult(_subset(records, kept, replaced), dropped, changed)


def step_layout(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Map known alternative key layouts onto the task's fields; drops nothing."""
    return _each(records, lambda line, record: normalize_layout(record, task))


def step_labels(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Respell label variants canonically; drop a record with a label outside the task's schema."""

    def check(line: int, record: dict):
        changed = False
        for name, allowed in task.label_values.items():
            if name not in record:
                continue  # reported by the schema step
            canonical = normalize_label(name, record[name], allowed)
            if canonical is None:
                return str(DataError(source, line, name, f"{record[name]!r} is not one of {list(allowed)}"))
            if canonical != record[name]:
                record, changed = {**record, name: canonical}, True
        return record, changed

    return _each(records, check)


def step_schema(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Drop a record that does not become chat messages (a missing field, a wrong type)."""

    def check(line: int, record: dict):
        try:
            to_messages(record, task, source, line)
        except DataError as error:
            return str(error)
        return record, False

    return _each(records, check)


def step_markup(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Strip HTML tags and entities from the free-text fields (the input, unless it is an object); drops nothing."""
    fields = ((task.input_field,) if not task.input_is_object else ()) + task.text_answer_fields

    def check(line: int, record: dict):
        if task.input_is_chat:
            return _map_turns(record, task, strip_markup)
        cleaned = {}
        for name in fields:
            text, changed = strip_markup(record[name])
            if changed:
                cleaned[name] = text
        return ({**record, **cleaned}, True) if cleaned else (record, False)

    return _each(records, check)


def step_quality(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Drop a record whose quality field is empty, a placeholder or too short to be a message."""

    def check(line: int, record: dict):
        name, text = task.quality_text(record)
        # In a chat a short last turn ("it's #48213") is normal: there it must only not be a placeholder,
        # and the customer's turns together must make a message.
        problem = is_junk(text, min_words=1 if task.input_is_chat else 3)
        if not problem and task.input_is_chat:
            name, problem = task.input_field, is_junk(" ".join(t for _, t in task.text_turns(record)))
        return str(DataError(source, line, name, problem)) if problem else (record, False)

    return _each(records, check)


def step_language(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Drop a record whose input reads as another language, for tasks that filter on language."""

    def check(line: int, record: dict):
        if task.language_filter and non_english(" ".join(text for _, text in task.text_turns(record))):
            return str(DataError(source, line, task.input_field, "not English"))
        return record, False

    return _each(records, check)


def step_pii(records: list[dict], task: Task, source: str = "<records>") -> StepResult:
    """Replace PII in a free-text input by typed placeholders (``scrub_pii``), counting them; drops nothing."""
    counts: Counter = Counter()

    def scrub(text: str) -> tuple[str, bool]:
        scrubbed, found = scrub_pii(text)
        counts.update(found)
        return scrubbed, bool(found)

    def check(line: int, record: dict):
        if task.input_is_chat:  # every turn: an agent may repeat the customer's email or number
            return _map_turns(record, task, scrub)
        if task.input_is_object:
            return record, False
        scrubbed, found = scrub_pii(record[task.input_field])
        if not found:
            return record, False
        counts.update(found)
        return {**record, task.input_field: scrubbed}, True

    result = _each(records, check)
    return StepResult(result.kept, result.dropped, result.changed, pii_counts=counts)


def step_length(records: list[dict], task: Task, tokenizer, max_length: int, source: str = "<records>") -> StepResult:
    """Drop a record longer than ``max_length`` tokens as a training example; keeps every record's length."""
    lengths: list[int] = []

    def check(line: int, record: dict):
        n = len(tokenize_example(tokenizer, to_messages(record, task), max_length=10**9).input_ids)
        lengths.append(n)
        if n > max_length:
            return str(DataError(source, line, None, f"{n} tokens > max_length {max_length}"))
        return record, False

    result = _each(records, check)
    return StepResult(result.kept, result.dropped, result.changed, token_lengths=lengths)


@dataclass(frozen=True)
class Duplicates:
    """Records to drop as duplicates, by position in the records searched, with the reason for each."""

    exact: dict[int, str]
    near: dict[int, str]
    conflicts: dict[int, str]  # duplicates (exact or near) whose labels disagree with their group's majority


def step_duplicates(records: list[dict], task: Task, threshold: float = 0.7, source: str = "<records>") -> Duplicates:
    """Exact duplicates (same normalized text), then near-duplicates (MinHash LSH), then label conflicts.

    Records that are exact duplicates or conflicts are not searched again for near-duplicates.
    """
    lines = [line for line, _ in numbered(records)]
    by_key: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_key[dedup_key(task.input_text(record))].append(index)
    exact, conflicts = _resolve(
        [g for g in by_key.values() if len(g) > 1], records, lines, task, "exact duplicate", source
    )
    remaining = [i for i in range(len(records)) if i not in exact and i not in conflicts]
    groups = near_duplicate_groups([_near_text(records[i], task) for i in remaining], threshold)
    near, near_conflicts = _resolve(
        [[remaining[j] for j in g] for g in groups], records, lines, task, "near duplicate", source
    )
    return Duplicates(exact, near, conflicts | near_conflicts)


def _drop_in_turn(records: list[dict], drops: list[tuple[str, dict[int, str]]]) -> list[tuple[str, StepResult]]:
    """Disjoint drops (by position in ``records``) applied one after another, as one pipeline step each."""
    results, positions = [], list(range(len(records)))
    for name, reasons in drops:
        dropped = {i: reasons[p] for i, p in enumerate(positions) if p in reasons}
        positions = [p for p in positions if p not in reasons]
        results.append((name, StepResult(_subset(records, positions), dropped)))
    return results


class _Ledger:
    """The pipeline's bookkeeping: every raw record's ``RecordOutcome``, the live records, and the steps table."""

    def __init__(self, raw: list[dict]):
        pairs = list(numbered(raw))
        self.outcomes = [RecordOutcome(line=line, id=record.get("id")) for line, record in pairs]
        self.records = Records([dict(record) for _, record in pairs], [line for line, _ in pairs])
        self.live = list(range(len(pairs)))  # the outcome index of each live record
        self.steps: list[dict] = []

    def apply(self, name: str, result: StepResult) -> None:
        """Note on each record's outcome what step ``name`` did to it, and go on with the records it kept."""
        for position, reason in result.dropped.items():
            outcome = self.outcomes[self.live[position]]
            outcome.status, outcome.step, outcome.reason = "dropped", name, reason
        for position in result.changed:
            self.outcomes[self.live[position]].changes.append(name)
        self.live = [index for position, index in enumerate(self.live) if position not in result.dropped]
        self.records = result.kept
        self.steps.append(
            {"step": name, "dropped": len(result.dropped), "changed": len(result.changed), "remaining": len(self.live)}
        )


RECORD_STEPS = (
    ("layout", step_layout),
    ("labels", step_labels),
    ("schema", step_schema),
    ("markup", step_markup),
    ("quality", step_quality),
    ("language", step_language),
    ("pii", step_pii),
)


def curate(
    raw: list[dict],
    task: Task,
    tokenizer=None,
    max_length: int = 256,
    near_dup_threshold: float = 0.7,
    source: str = "<records>",
) -> CurationResult:
    """Run the whole pipeline on raw records (as read from ``source``, in file order).

    Args:
        raw: records as read by ``ftlib.data.records.read_records`` (or ``read_jsonl``); never modified.
        task: the dataset's task: fields, label values and known alternative layouts.
        tokenizer: when given, records longer than ``max_length`` tokens are dropped.
        near_dup_threshold: Jaccard similarity of character 5-grams above which two texts are near-duplicates.
    """
    ledger = _Ledger(raw)
    pii_counts: Counter = Counter()
    for name, step in RECORD_STEPS:
        result = step(ledger.records, task, source)
        pii_counts.update(result.pii_counts)
        ledger.apply(name, result)
    found = step_duplicates(ledger.records, task, near_dup_threshold, source)
    for name, result in _drop_in_turn(
        ledger.records,
        [("exact_duplicates", found.exact), ("near_duplicates", found.near), ("conflicts", found.conflicts)],
    ):
        ledger.apply(name, result)
    lengths: list[int] = []
    if tokenizer is not None:
        result = step_length(ledger.records, task, tokenizer, max_length, source)
        lengths = result.token_lengths
        ledger.apply("length", result)
    return CurationResult(list(ledger.records), ledger.outcomes, ledger.steps, pii_counts, lengths)


def _resolve(
    groups: list[list[int]], records: list[dict], lines: list[int], task: Task, kind: str, source: str
) -> tuple[dict, dict]:
    """Within each duplicate group keep the first record; where labels disagree, keep the majority label's
    first record, or drop the whole group when no label has a majority (nobody knows which is right)."""
    duplicates, conflicts = {}, {}
    for group in groups:
        label_of = {i: tuple(records[i].get(f) for f in task.label_fields) for i in group}
        votes = Counter(label_of.values())
        where = {i: f"{location(source, lines[i])}: {kind}" for i in group}
        if len(votes) == 1:
            duplicates.update({i: f"{where[i]} of line {lines[group[0]]}" for i in group[1:]})
            continue
        (top, top_votes), *rest = votes.most_common()
        if rest and rest[0][1] == top_votes:
            conflicts.update({i: f"{where[i]}s with conflicting labels {sorted(votes)} and no majority" for i in group})
            continue
        keep = next(i for i in group if label_of[i] == top)
        conflicts.update(
            {
                i: f"{where[i]} of line {lines[keep]} with minority labels {label_of[i]}"
                for i in group
                if label_of[i] != top
            }
        )
        duplicates.update({i: f"{where[i]} of line {lines[keep]}" for i in group if i != keep and label_of[i] == top})
    return duplicates, conflicts


def _near_text(record: dict, task: Task) -> str:
    """The text compared for near-duplicates. Structured inputs differ only in their values, so their
    rendered texts all look alike: for them the free text (e.g. the description) is compared."""
    return record[task.quality_field] if task.input_is_object else task.input_text(record)


# ---------------------------------------------------------------- measuring the pipeline

# flaw class -> how the pipeline shows it caught one: ("dropped", steps) or ("changed", step)
SIGNALS = {
    "exact_duplicate": ("dropped", ("exact_duplicates", "near_duplicates")),
    "near_duplicate": ("dropped", ("exact_duplicates", "near_duplicates")),
    "conflict_duplicate": ("dropped", ("conflicts",)),
    "pii": ("changed", "pii"),
    "junk": ("dropped", ("quality",)),
    "over_long": ("dropped", ("length",)),
    "label_variant": ("changed", "labels"),
    "label_invalid": ("dropped", ("labels",)),
    "html": ("changed", "markup"),
    "layout": ("changed", "layout"),
    "non_english": ("dropped", ("language",)),
}


@dataclass(frozen=True)
class FlawScore:
    """How one curation step did on one class of injected flaws."""

    support: int  # records carrying the flaw
    recall: float  # share of them the step caught
    precision: float  # share of what the step flagged that carried the flaw


@dataclass(frozen=True)
class PiiStrings:
    """Whether the injected personal data is gone from the kept records, string by string."""

    support: int  # injected strings in records that were kept
    recall: float  # share of them no kept record still contains
    leaked: list  # (record id, string) of the first ten still there


@dataclass(frozen=True)
class ManifestScores:
    """The curation pipeline measured against the generator's manifest of injected flaws."""

    flaws: dict[str, FlawScore]
    pii_strings: PiiStrings

    def rows(self) -> list[dict]:
        """One row per flaw class present in the data: its support, recall and precision."""
        return [{"flaw": name, **asdict(score)} for name, score in self.flaws.items() if score.support]

    def pii_sentence(self) -> str:
        return f"PII strings removed: {self.pii_strings.recall:.3f} of {self.pii_strings.support}"


def measure_against_manifest(result: CurationResult, manifest: dict) -> ManifestScores:
    """Precision and recall of each step against the generator's ground truth.

    Exact and near duplicates share one detector signal (removed as a duplicate), so their precision is
    computed over all removed duplicates; a conflicting pair counts both records, since with no
    majority neither label can be trusted.
    """
    flaws = manifest["flaws"]
    truth: dict[str, set] = defaultdict(set)
    for record_id, flaw in flaws.items():
        truth[flaw["class"]].add(record_id)
        if flaw["class"] == "conflict_duplicate":
            truth["conflict_duplicate"].add(flaw["of"])
    duplicates = truth["exact_duplicate"] | truth["near_duplicate"]
    scores = {}
    for name, (kind, where) in SIGNALS.items():
        if kind == "dropped":
            flagged = {o.id for o in result.outcomes if o.step in where}
        else:
            flagged = {o.id for o in result.outcomes if where in o.changes}
        relevant = duplicates if name in ("exact_duplicate", "near_duplicate") else truth[name]
        true_positives = len(flagged & relevant)
        scores[name] = FlawScore(
            len(truth[name]),
            len(truth[name] & flagged) / len(truth[name]) if truth[name] else float("nan"),
            true_positives / len(flagged) if flagged else float("nan"),
        )
    return ManifestScores(scores, pii_string_recall(result, manifest))


def pii_string_recall(result: CurationResult, manifest: dict) -> PiiStrings:
    """Share of the injected PII strings that no kept record still contains."""
    texts = {r.get("id"): " ".join(str(v) for v in r.values()) for r in result.records}
    injected = [
        (rid, item["text"]) for rid, flaw in manifest["flaws"].items() for item in flaw.get("pii", []) if rid in texts
    ]
    leaked = [(rid, text) for rid, text in injected if text in texts.get(rid, "")]
    return PiiStrings(len(injected), 1 - len(leaked) / len(injected) if injected else float("nan"), leaked[:10])


def leakage(splits: dict[str, list[dict]], task: Task, threshold: float = 0.7) -> list[dict]:
    """Exact or near-duplicates shared by two splits (should be none after de-duplication).

    Uses the same keys as de-duplication: the normalized input, and the free text for near-duplicates.
    """
    names = [name for name, records in splits.items() for _ in records]
    records = [record for part in splits.values() for record in part]
    by_key: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_key[dedup_key(task.input_text(record))].append(index)
    groups = {tuple(g) for g in by_key.values() if len(g) > 1}
    groups |= {tuple(g) for g in near_duplicate_groups([_near_text(r, task) for r in records], threshold)}
    return [
        {"splits": sorted({names[i] for i in group}), "texts": [task.input_text(records[i])[:80] for i in group]}
        for group in sorted(groups)
        if len({names[i] for i in group}) > 1
    ]


SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_SEED = 0


def curated_splits(
    raw: list[dict], task: Task, tokenizer=None, max_length: int = 256, source: str = "<records>"
) -> dict[str, list[dict]]:
    """Curate raw records and split them 80/10/10, stratified: the splits lesson 02 writes.

    Lesson 01 and the benchmarks call this to score on the same validation split before 02 has run.
    """
    from ftlib.data.records import stratified_split

    records = curate(raw, task, tokenizer, max_length, source=source).records
    return stratified_split(records, SPLIT_FRACTIONS, key=task.stratum, seed=SPLIT_SEED)
