"""The trainer ftlib runs: ``transformers.Trainer`` with the answer-only (optionally label-weighted) loss and the
shared-prefix forward pass, its progress callback, peak-memory sampling and the loss history it logs."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import psutil
import torch
from transformers import Trainer, TrainerCallback

from ftlib.core.progress import LINE_INTERVAL_S, Progress
from ftlib.core.runtime import interrupt_requested
from ftlib.data.batches import IGNORE_INDEX, forward_with_shared_prefix

# TrainConfig(report_to="tensorboard") writes Trainer's logs here, inside the run folder. TensorBoard rather than
# MLflow or trackio, measured with `pip install --dry-run` against this environment: it adds 6 packages (19.3 MiB of
# wheels: tensorboard, grpcio, protobuf, Markdown, Werkzeug, tensorboard-data-server) where mlflow-skinny adds 22
# (11.6 MiB, among them fastapi, uvicorn, databricks-sdk, opentelemetry and cryptography) and trackio 13 (16.2 MiB,
# gradio_client, uvicorn, pillow...); writing needs no server, account or network (torch's SummaryWriter appends
# plain event files), and the folder is read offline with `tensorboard --logdir <run>/tensorboard`. trackio writes
# to a database under ~/.cache unless told otherwise, and MLflow to its own store: neither keeps a run's logs with it.
TENSORBOARD_DIR = "tensorboard"


class PeakMemory:
    """Peak resident memory of this process (sampled) and CUDA's max allocated, during a block."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, psutil.Process().memory_info().rss)

    def as_dict(self) -> dict:
        result = {"peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        if torch.cuda.is_available():
            result["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return result


def entries_during_training(log_history: list[dict]) -> list[dict]:
    """Trainer's log up to the summary ``train()`` writes (the entry with ``train_loss``), without later evaluations."""
    end = next((i for i, entry in enumerate(log_history) if "train_loss" in entry), len(log_history))
    return log_history[:end]


def history_from_log(log_history: list[dict]) -> dict:
    """Split Trainer's log into train-loss-per-step and val-loss-per-eval series (training only).

    Evaluations after ``train()`` returned are left out: with best-model selection they score the
    best checkpoint, not the last step they would be plotted at.
    """
    during = entries_during_training(log_history)
    train = [{"step": e["step"], "loss": e["loss"]} for e in during if "loss" in e]
    val_by_step = {e["step"]: e["eval_loss"] for e in during if "eval_loss" in e}
    return {"train": train, "val": [{"step": step, "loss": loss} for step, loss in val_by_step.items()]}


def answer_only_loss(outputs, labels: torch.Tensor, num_items_in_batch=None, weights=None) -> torch.Tensor:
    """Next-token cross-entropy when the model returned logits for the answer positions only.

    The logits are ``(n_answer_tokens, vocab)``, in the row-major order of
    ``ftlib.data.batches.answer_positions(labels)``; the targets are the labels one position later.
    Divided by ``num_items_in_batch`` (all label tokens of an accumulated batch) when Trainer passes it,
    as ``transformers`` does, so gradient accumulation gives the same update as one big batch.

    With ``weights`` (the collator's ``label_weights``, aligned with ``labels``) the loss is the weighted mean
    ``sum(w * token CE) / sum(w)`` over the answer tokens; ``num_items_in_batch`` is then the sum of the weights
    of the accumulated batch (``FtlibTrainer`` counts it so). All weights 1 give the unweighted loss.
    """
    shifted = labels[:, 1:]
    scored = shifted != IGNORE_INDEX
    targets = shifted[scored].to(outputs.logits.device)
    if weights is None:
        total = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else targets.numel())
    token_weights = weights[:, 1:][scored].to(outputs.logits.device, torch.float)
    losses = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="none")
    total = (token_weights * losses).sum()
    return total / (num_items_in_batch if num_items_in_batch is not None else token_weights.sum())


class FtlibTrainer(Trainer):
    """``Trainer`` that runs a batch's shared prompt prefix once, then the rows' own tokens on top of it.

    Causal attention makes the prefix's keys and values the same for every row, so the loss and the
    gradients are those of the plain forward pass (checked by a test), for ~40% less compute on the
    ticket task. Batches without ``shared_prefix_length`` take Trainer's usual path.

    Batches with ``label_weights`` (``TrainConfig.label_token_weight`` != 1) get the weighted answer loss of
    ``answer_only_loss`` on either path, normalized by the weight sum of the accumulated batch.
    """

    computed_tokens = 0  # non-pad tokens the training steps really ran: a shared prefix counts once per batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        prefix = int(inputs.pop("shared_prefix_length", 0))
        weights = inputs.pop("label_weights", None)
        if model.training:
            rows = inputs["input_ids"].shape[0]
            self.computed_tokens += int(inputs["attention_mask"].sum()) - prefix * (rows - 1)
        if prefix == 0:
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # Trainer's own path (and its scaling across processes), with this batch's weights in the loss
            unweighted = self.compute_loss_func
            self.compute_loss_func = functools.partial(answer_only_loss, weights=weights)
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self.compute_loss_func = unweighted
        outputs = forward_with_shared_prefix(model, inputs, prefix)
        loss = answer_only_loss(outputs, inputs["labels"], num_items_in_batch, weights)
        return (loss, outputs) if return_outputs else loss

    def _get_num_items_in_batch(self, batch_samples: list, device):
        """Trainer's count of the label tokens in an accumulated batch; with ``label_weights``, their weight sum.

        The weight sum is the count times this process's ratio of weight to tokens: exact on one process.
        """
        count = super()._get_num_items_in_batch(batch_samples, device)
        if count is None or not batch_samples or "label_weights" not in batch_samples[0]:
            return count
        tokens = sum(int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum()) for batch in batch_samples)
        weight = sum(float(batch["label_weights"][:, 1:].sum()) for batch in batch_samples)
        return count * (weight / tokens) if tokens else count


class StepProgress(TrainerCallback):
    """Training progress through ``ftlib.core.progress``: step of total, loss, elapsed and estimated time left,
    and each validation loss; on the main process only (one report under DDP)."""

    def __init__(self, mode: str | None = None, interval: float = LINE_INTERVAL_S, total: int | None = None):
        self.mode, self.interval, self.total = mode, interval, total  # total: the steps run, if not max_steps
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # a resumed run starts at its checkpoint's step
            total = self.total or state.max_steps
            self.progress = Progress(
                total, "train", "step", initial=state.global_step, mode=self.mode, interval=self.interval
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:  # ftlib logs every step (logging_steps=1)
            self.progress.update(state.global_step - self.progress.n, loss=logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.progress is not None and metrics and "eval_loss" in metrics:
            self.progress.note(f"validation loss {metrics['eval_loss']:.4f} at step {state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()
            self.progress = None  # the evaluation train() runs afterwards is not part of training


class InterruptGuard(TrainerCallback):
    """Ends training at the next step boundary after a Ctrl-C that a library swallowed (``catch_interrupts``): the
    command line's KeyboardInterrupt handling then runs as if the first one had arrived."""

    def on_step_begin(self, args, state, control, **kwargs):
        if interrupt_requested():
            raise KeyboardInterrupt

    on_step_end = on_step_begin


class StopAfterSteps(TrainerCallback):
    """Ends training after ``step`` optimizer steps while the learning-rate schedule runs to ``max_steps``
    (``TrainConfig.stop_after_steps``): the run repeats the first steps of the longer one exactly. The last step is
    evaluated and checkpointed as a run's final step is."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"
        return control


def training_seconds(log_history: list[dict], train_runtime: float) -> float:
    """Trainer's runtime minus the validation passes run inside it: the time that throughput is about."""
    return train_runtime - sum(entry.get("eval_runtime", 0.0) for entry in entries_during_training(log_history))


def log_to_run_folder(trainer: Trainer, scratch: Path) -> None:
    """Point Trainer's TensorBoard callback (``report_to="tensorboard"``) at ``<run>/tensorboard``.

    transformers 5 writes TensorBoard logs under ``args.output_dir``, the scratch ``trainer/`` folder that
    ``publish`` deletes; in the scratch run folder they move into place with the run (and survive a resume).
    """
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(scratch / TENSORBOARD_DIR)


def last_step_evaluation(trainer: Trainer) -> dict | None:
    """The validation metrics logged at the last training step when the trainer keeps that step's weights.

    Then a final ``evaluate()`` would score the same weights on the same set again (the smoke profile's runs end
    on an evaluation step); None when it must run: no evaluation at the last step, or an earlier best checkpoint
    was loaded back.
    """
    state, args = trainer.state, trainer.args
    during = entries_during_training(state.log_history)
    last = next((entry for entry in reversed(during) if "eval_loss" in entry), None)
    keeps_last = not args.load_best_model_at_end or state.best_global_step in (None, state.global_step)
    if last is None or last["step"] != state.global_step or not keeps_last:
        return None
    return {key: value for key, value in last.items() if key.startswith("eval_")}
