"""The model's forward passes outside training: answer-token losses and batched greedy generation.

Both share the prompt prefix that every row of a set starts with (the chat template's system turn), computing it
once; ``benchmarks/generation_speed.py`` checks the answers against plain ``model.generate``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ftlib.core.config import DEFAULT_DECODING, Decoding
from ftlib.core.progress import track
from ftlib.core.tasks import Task
from ftlib.data.batches import (
    IGNORE_INDEX,
    PaddingCollator,
    SupervisedDataset,
    common_prefix_length,
    forward_with_shared_prefix,
    prompt_text,
)


@torch.no_grad()
def example_losses(
    model, tokenizer, records: list[dict], task: Task | None, batch_size: int = 16, max_length: int = 256
) -> list[tuple[float, int]]:
    """Each record's summed answer-token loss and its token count (prompt excluded), for a loss with an interval."""
    dataset = SupervisedDataset(records, tokenizer, max_length, task)
    # As in training: the batch's shared prompt prefix runs once, and the vocabulary projection only at the
    # answer positions (the prefix holds none), so the scores equal the plain forward pass's for less compute.
    collate = PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True, share_prefix=True)
    model.eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        prefix = int(batch.pop("shared_prefix_length"))
        batch = {key: value.to(model.device) for key, value in batch.items()}
        logits = forward_with_shared_prefix(model, batch, prefix).logits
        targets = batch["labels"][:, 1:]
        scored = targets != IGNORE_INDEX  # row-major, in the order of the logits' rows
        token_nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets[scored], reduction="none"
        )
        rows = scored.nonzero()[:, 0]
        nll = torch.zeros(len(targets), dtype=torch.float64, device=token_nll.device).index_add_(
            0, rows, token_nll.double()
        )
        counts = scored.sum(dim=1)
        out += [(float(n), int(c)) for n, c in zip(nll, counts)]
    return out


@dataclass(frozen=True)
class HeldOut:
    """The answer tokens' mean negative log-likelihood under a model, and its perplexity."""

    loss: float
    perplexity: float
    tokens: int  # answer tokens scored


@torch.no_grad()
def heldout_loss(
    model, tokenizer, records: list[dict], task: Task | None = None, batch_size: int = 16, max_length: int = 256
) -> HeldOut:
    """Mean negative log-likelihood of the answer tokens (prompt excluded) and its perplexity.

    Token-weighted: every answer token counts once, however the batches fall. ``evaluate``'s
    perplexity metric reloads a model by hub id, so it cannot score an in-memory PEFT model.
    """
    losses = example_losses(model, tokenizer, records, task, batch_size, max_length)
    total_nll, total_tokens = sum(n for n, _ in losses), sum(c for _, c in losses)
    loss = total_nll / total_tokens
    return HeldOut(loss, math.exp(loss), total_tokens)


@torch.no_grad()
def _prefix_cache(model, prefix: list[int]):
    """The key/value cache of ``prefix`` (one row), computed once and copied for every batch."""
    ids = torch.tensor([prefix], device=model.device)
    return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True).past_key_values


def answer_ids(row: list[int], eos_token_id: int) -> list[int]:
    """A generated row cut after its first EOS: ``generate`` fills a finished row with padding."""
    return row[: row.index(eos_token_id) + 1] if eos_token_id in row else row


def decode_answer(tokenizer, ids: list[int]) -> str:
    """An answer's text as ``generate`` returns it: special tokens dropped, outer whitespace stripped."""
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


@torch.no_grad()
def generate(
    model,
    tokenizer,
    conversations: list[list[dict]],
    decoding: Decoding = DEFAULT_DECODING,
    share_prefix: bool = True,
) -> list[str]:
    """Greedy answers for a list of chat prompts (``generate_tokens``, decoded)."""
    ids = generate_tokens(model, tokenizer, conversations, decoding, share_prefix)
    return [decode_answer(tokenizer, row) for row in ids]


@torch.no_grad()
def generate_tokens(
    model,
    tokenizer,
    conversations: list[list[dict]],
    decoding: Decoding = DEFAULT_DECODING,
    share_prefix: bool = True,
) -> list[list[int]]:
    """The greedy answer tokens of each chat prompt, up to and with the EOS (``answer_ids``), in batches padded on
    the left.

    Left padding keeps every prompt's last token at the end of the row, where generation
    continues; right padding would make the model continue after pad tokens.

    Every prompt of a set starts with the same tokens (the chat template's system turn with the
    instruction, and for a few-shot baseline the solved examples): with ``share_prefix`` those
    tokens run through the model once, and each batch starts from a copy of their key/value cache.
    Rows are then laid out as [shared prefix][padding][own tokens]; the attention mask hides the
    padding and positions count only unmasked tokens, so each row sees exactly what it would alone.
    ``benchmarks/generation_speed.py`` checks the answers against plain ``model.generate`` and
    measures the speed-up. Progress is shown per batch (``ftlib.core.progress``).
    """
    model.eval()
    eos = tokenizer.eos_token_id
    rows = [tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations]
    # common_prefix_length keeps at least one own token per row: generation needs a new input to continue from.
    shared = common_prefix_length(rows) if share_prefix and len(rows) > 1 else 0
    prefix, cache = rows[0][:shared] if shared > 0 else [], None
    if prefix:
        cache = _prefix_cache(model, prefix)
    pad = tokenizer.pad_token_id
    # Longest first: rows of a batch have similar lengths, so less padding is computed.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    by_index: dict[int, list[int]] = {}
    batch_size = decoding.batch_size
    starts = range(0, len(order), batch_size)
    for start in track(starts, len(starts), f"generate ({len(order)} prompts)", "batch"):
        chunk = order[start : start + batch_size]
        own = [rows[i][len(prefix) :] for i in chunk]
        width = max(len(o) for o in own)
        ids = [prefix + [pad] * (width - len(o)) + o for o in own]
        mask = [[1] * len(prefix) + [0] * (width - len(o)) + [1] * len(o) for o in own]
        kwargs = {}
        if cache is not None:
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(chunk))
            kwargs["past_key_values"] = batch_cache
        input_ids = torch.tensor(ids, device=model.device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.tensor(mask, device=model.device),
            max_new_tokens=decoding.max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos,
            **kwargs,
        )
        for index, row in zip(chunk, output[:, input_ids.shape[1] :]):
            by_index[index] = answer_ids(row.tolist(), eos)
    return [by_index[i] for i in range(len(rows))]
