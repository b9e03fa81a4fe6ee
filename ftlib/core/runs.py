"""The record of a training run (``manifest.json``) as typed dataclasses, and ``load_run`` to read one back.

``ftlib.engine.train.train`` builds a ``RunRecord`` and writes it as JSON; every reader (the command line, the lessons'
tables and plots, the benchmarks) goes through ``load_run``. Light: importable without torch.

Schema versions:
    1: manifests written before the ``version`` field existed. Their memory block held the measured peaks
       beside the estimate as a display row (``{"peak_rss_mb": ..., "estimate": {"total GB": ...}}``); they
       are read and converted.
    2: ``version: 2``; memory is ``{"measured": {...}, "estimate": {...}}`` with field names, not display keys.
    3: ``version: 3`` adds ``parent``: the run a re-tune started from (its folder and its data hashes), null for a
       run that started from a fresh adapter. Versions 1 and 2 are read with ``parent`` None (their
       ``continued_from`` still names the adapter folder); a version-2 reader refuses a version-3 manifest by its
       version, with "upgrade ftlib", instead of stumbling on an unknown field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ftlib.core.config import TrainConfig

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest that cannot be read: missing, not JSON, of an unknown schema version, or missing fields."""


@dataclass(frozen=True)
class DataSummary:
    """The data a run trained and validated on: hashes, counts and what tokenization cut or dropped."""

    train_sha256: str
    val_sha256: str
    train_examples: int
    val_examples: int
    train_truncated: int
    val_truncated: int
    dropped_without_answer_tokens: int


@dataclass(frozen=True)
class ParentRun:
    """The run a re-tune continued: its folder and the data it had trained and validated on (the lineage)."""

    run: str  # the parent's run folder, as the child was given it
    train_sha256: str
    val_sha256: str

    @classmethod
    def of(cls, folder: str | Path) -> ParentRun:
        """The lineage entry of the run in ``folder``, read from its manifest."""
        data = load_run(folder).data
        return cls(str(folder), data.train_sha256, data.val_sha256)


@dataclass(frozen=True)
class ParameterCounts:
    """Trainable and total parameters (4-bit weights counted at their real size)."""

    trainable: int
    total: int
    trainable_percent: float


@dataclass(frozen=True)
class CheckpointSummary:
    """Checkpoints and best-model selection: where a run resumed, which step was kept, whether it stopped early."""

    resumed_from: str | None
    best_step: int | None
    best_val_loss: float | None
    steps_run: int
    stopped_early: bool


@dataclass(frozen=True)
class RunMetrics:
    """Losses and throughput of a run."""

    train_loss: float
    final_val_loss: float
    train_tokens: int
    train_seconds: float
    train_tokens_per_second: float
    computed_tokens: int  # non-pad tokens the steps ran: a shared prompt prefix counts once per batch


@dataclass(frozen=True)
class MeasuredMemory:
    """Peak memory measured during training, in MiB (the main process's under DDP)."""

    peak_rss_mb: float
    cuda_max_allocated_mb: float | None = None  # on a GPU only

    @property
    def peak_mb(self) -> float:
        """The peak that matters, in MiB: CUDA max allocated on a GPU, peak RSS on a CPU."""
        return self.cuda_max_allocated_mb if self.cuda_max_allocated_mb is not None else self.peak_rss_mb

    @property
    def peak_gb(self) -> float:
        """``peak_mb`` in GB (10^9 bytes), the unit of the estimates."""
        return self.peak_mb * 2**20 / 1e9


@dataclass(frozen=True)
class EstimatedMemory:
    """``ftlib.engine.memory.estimate_memory``'s prediction for the run, in GB per component."""

    method: str
    device: str
    batch: int
    seq_len: int
    components_gb: dict[str, float]  # component name (``MemoryEstimate.COMPONENTS``) -> GB
    total_gb: float
    peak_phase: str

    @classmethod
    def from_estimate(cls, estimate: Any, digits: int = 3) -> EstimatedMemory:
        """From a ``ftlib.engine.memory.MemoryEstimate`` (bytes), rounded as its ``as_row`` rounds."""
        return cls(
            estimate.method,
            estimate.device,
            estimate.batch,
            estimate.seq_len,
            {name: round(estimate.gb(name), digits) for name in estimate.COMPONENTS},
            round(estimate.gb(), digits),
            estimate.peak_phase,
        )


@dataclass(frozen=True)
class RunMemory:
    """Measured peaks and the estimate made before training."""

    measured: MeasuredMemory
    estimate: EstimatedMemory


@dataclass(frozen=True)
class RunRecord:
    """Everything a training run recorded about itself; ``manifest.json`` is this, as JSON."""

    base_model: str
    method: str
    continued_from: str | None  # the adapter folder a continued run started from
    config: TrainConfig
    device: str
    world_size: int  # processes that trained together (DDP)
    global_batch_size: int
    torch_threads: int
    data: DataSummary
    parameters: ParameterCounts
    checkpoints: CheckpointSummary
    metrics: RunMetrics
    memory: RunMemory
    wall_seconds: float
    versions: dict[str, str]  # python and the tracked packages
    parent: ParentRun | None = None  # the run whose adapter this one kept training (version 3 on)
    version: int = SCHEMA_VERSION  # of this schema (see the module docstring)

    def to_json(self) -> str:
        """The manifest's text: the version first, then the fields in order."""
        values = asdict(self)
        return json.dumps({"version": values.pop("version"), **values}, indent=1)

    def write(self, folder: str | Path) -> Path:
        """Write ``manifest.json`` into a run folder; returns its path."""
        from ftlib.core.fileio import write_text

        return write_text(self.to_json(), Path(folder) / MANIFEST)

    def as_row(self, name: str) -> dict[str, Any]:
        """A table row: parameters, final validation loss, speed, and estimated vs measured peak memory."""
        estimated, measured = self.memory.estimate.total_gb, self.memory.measured.peak_gb
        return {
            "run": name,
            "trainable params": f"{self.parameters.trainable:,}",
            "total params": f"{self.parameters.total:,}",
            "steps": self.checkpoints.steps_run,
            "final val loss": self.metrics.final_val_loss,
            "train tokens/s": self.metrics.train_tokens_per_second,
            "train s": self.metrics.train_seconds,
            "estimated peak GB": estimated,
            "measured peak GB": round(measured, 3),
            "estimate / measured": round(estimated / measured, 2),
        }

    @property
    def weights_folder(self) -> str:
        """The run folder's subfolder holding the weights: ``model`` for a full fine-tune, else ``adapter``."""
        return "model" if self.method == "full" else "adapter"


def _build(kind: type, values: Any, where: str):
    """``kind(**values)`` for a dataclass, with a located error instead of a TypeError."""
    if not isinstance(values, dict):
        raise ManifestError(f"{where}: expected an object, got {type(values).__name__}")
    names = {spec.name for spec in fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        return kind(**values)
    except TypeError as error:  # a required field is missing
        raise ManifestError(f"{where}: {error}") from None


def _memory_from_v1(memory: dict, where: str) -> dict:
    """A version-1 memory block (measured peaks beside a display-row estimate) in the version-2 layout."""
    row = memory.get("estimate")
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: version 1 memory without an estimate")
    measured = {key: memory[key] for key in ("peak_rss_mb", "cuda_max_allocated_mb") if key in memory}
    components = {
        key.removesuffix(" GB"): value for key, value in row.items() if key.endswith(" GB") and key != "total GB"
    }
    try:
        estimate = {
            "method": row["method"],
            "device": row["device"],
            "batch": row["batch"],
            "seq_len": row["seq_len"],
            "components_gb": components,
            "total_gb": row["total GB"],
            "peak_phase": row.get("peak phase", "backward"),
        }
    except KeyError as error:
        raise ManifestError(f"{where}: version 1 memory estimate without {error}") from None
    return {"measured": measured, "estimate": estimate}


def record_from_dict(values: dict, source: str = "<manifest>") -> RunRecord:
    """A ``RunRecord`` from a manifest's parsed JSON (any readable version).

    Raises:
        ManifestError: an unknown version, or fields missing or unknown; the message names ``source``.
    """
    if not isinstance(values, dict):
        raise ManifestError(f"{source}: expected a JSON object, got {type(values).__name__}")
    version = values.get("version", 1)  # written before the field existed: version 1
    if version not in READABLE_VERSIONS:
        raise ManifestError(
            f"{source}: manifest version {version!r} is not one this ftlib reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}); a newer ftlib wrote it: upgrade ftlib"
        )
    values = dict(values, version=SCHEMA_VERSION)
    memory = values.get("memory")
    if version == 1 and isinstance(memory, dict):
        values["memory"] = _memory_from_v1(memory, f"{source}, field 'memory'")
    nested = {
        "config": TrainConfig,
        "data": DataSummary,
        "parameters": ParameterCounts,
        "checkpoints": CheckpointSummary,
        "metrics": RunMetrics,
    }
    if values.get("parent") is not None:
        nested["parent"] = ParentRun
    for name, kind in nested.items():
        if name in values:
            values[name] = _build(kind, values[name], f"{source}, field '{name}'")
    if "memory" in values:
        memory = values["memory"]
        where = f"{source}, field 'memory'"
        if not isinstance(memory, dict):
            raise ManifestError(f"{where}: expected an object, got {type(memory).__name__}")
        values["memory"] = _build(
            RunMemory,
            {
                "measured": _build(MeasuredMemory, memory.get("measured"), where + ".measured"),
                "estimate": _build(EstimatedMemory, memory.get("estimate"), where + ".estimate"),
            },
            where,
        )
    return _build(RunRecord, values, source)


def manifest_path(run: str | Path) -> Path:
    """A run folder's ``manifest.json``, or ``run`` itself when it names a file."""
    run = Path(run)
    return run if run.suffix == ".json" else run / MANIFEST


def load_run(run: str | Path) -> RunRecord:
    """Read a run's record from its folder (or its ``manifest.json``).

    Raises:
        ManifestError: no manifest there, not JSON, an unknown schema version, or fields missing.
    """
    path = manifest_path(run)
    if not path.is_file():
        raise ManifestError(f"{path}: no run manifest there (is {path.parent} a training run folder?)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from None
    return record_from_dict(values, str(path))


def scratch_folder(output_dir: str | Path) -> Path:
    """The hidden ``.<name>.partial/`` folder beside a run folder, where a run is written (and checkpointed) before
    it replaces the run folder."""
    output_dir = Path(output_dir)
    return output_dir.parent / f".{output_dir.name}.partial"


def last_complete_checkpoint(folder: Path) -> str | None:
    """The highest-step ``checkpoint-<step>`` folder whose ``trainer_state.json`` is whole, or None.

    Trainer writes that file last, after the weights, optimizer, scheduler and RNG states, and not atomically:
    a run killed while saving leaves a folder without it, or with half of it, which resuming cannot load.
    """
    steps = {}
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and path.is_dir():
            steps[int(step)] = path
    for step in sorted(steps, reverse=True):
        try:
            json.loads((steps[step] / "trainer_state.json").read_text())
        except (OSError, ValueError):  # missing, or cut short mid-write
            continue
        return str(steps[step])
    return None
