"""The model's forward passes outside training: answer-token losses and batched greedy generation.

Both share the prompt prefix that every row of a set starts with (the chat template's system turn), computing it
once; ``benchmarks/generation_speed.py`` checks the answers against plain ``model.generate``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

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


# GenerationConfig fields that change greedy decoding's logits or its stopping when set: where a model's config sets
# one (Qwen2.5-Instruct ships a repetition penalty), generate_tokens leaves decoding to ``model.generate``.
_LOGITS_SETTINGS = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "stop_strings": (None,),
    "renormalize_logits": (None, False),
}


def plain_greedy(model) -> bool:
    """Whether greedy decoding of ``model`` is argmax of its logits, step by step (nothing in its generation config
    alters them), so ``greedy_decode`` answers exactly as ``model.generate(do_sample=False)`` would."""
    config = getattr(model, "generation_config", None)
    return config is None or all(getattr(config, name, None) in allowed for name, allowed in _LOGITS_SETTINGS.items())


class JsonScan:
    """Reads an answer's text as it grows and tells when ``parse_answer`` can no longer accept it.

    ``parse_answer`` strips the text and needs one JSON object, so the answer is invalid for good at the first
    character that is neither whitespace nor ``{`` before the object, or not whitespace after its closing brace.
    Braces and brackets are counted outside strings (escapes skipped), so the object closes where ``json.loads``
    would end it. Anything else (a string not yet closed, an object still open) leaves the verdict open.
    """

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self.text = ""  # the text read so far
        self.state = "lead"  # lead (whitespace so far) | object | after (closed, whitespace since) | invalid
        self.depth, self.in_string, self.escaped = 0, False, False

    def read(self, text: str) -> bool:
        """Read the whole answer text so far (each call a longer one); True once it can no longer parse.

        A trailing U+FFFD is left unread: a token may end inside a multi-byte character, which decodes as U+FFFD
        until the next token completes it. A text that does not extend the one read before is read anew.
        """
        text = text.rstrip("\ufffd")
        if not text.startswith(self.text):
            self._start()
        for char in text[len(self.text) :]:
            if self.state == "invalid":
                break
            self._step(char)
        self.text = text
        return self.state == "invalid"

    def _step(self, char: str) -> None:
        if self.state in ("lead", "after"):
            if char == "{" and self.state == "lead":
                self.state, self.depth = "object", 1
            elif not char.isspace():
                self.state = "invalid"
        elif self.in_string:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = False
        elif char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1
            if self.depth == 0:
                self.state = "after"


class InvalidJsonStop:
    """``greedy_decode``'s ``done`` for JSON answers: a row stops ``tail`` tokens after it can no longer parse.

    Its score is decided then (``parse_answer`` gives None whatever follows), so later tokens change nothing that is
    measured; the ``tail`` tokens kept show what the model wrote instead. The text is decoded as ``decode_answer``
    does (special tokens dropped), the answer so far each step.
    """

    def __init__(self, tokenizer, tail: int):
        self.tokenizer, self.tail = tokenizer, tail
        self.scans: dict[int, JsonScan] = {}
        self.invalid_at: dict[int, int] = {}  # row -> its token count when it became invalid

    def __call__(self, row: int, ids: list[int]) -> bool:
        if row not in self.invalid_at:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if row not in self.scans:
                self.scans[row] = JsonScan()
            if not self.scans[row].read(text):
                return False
            self.invalid_at[row] = len(ids)
        return len(ids) >= self.invalid_at[row] + self.tail


class _RowsDone(StoppingCriteria):
    """A ``done(row, answer_ids)`` callback as a stopping criterion of ``model.generate`` (rows stay in the batch)."""

    def __init__(self, done: Callable[[int, list[int]], bool], prompt_length: int):
        self.done, self.prompt_length = done, prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        rows = [self.done(i, row[self.prompt_length :].tolist()) for i, row in enumerate(input_ids)]
        return torch.tensor(rows, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def greedy_decode(
    model,
    input_ids,
    attention_mask,
    cache,
    cached: int,
    max_new_tokens: int,
    eos_token_id: int,
    done: Callable[[int, list[int]], bool] | None = None,
) -> list[list[int]]:
    """Greedy answers of one left-padded batch, each up to and with its EOS, dropping finished rows as it goes.

    ``model.generate`` keeps a finished row in the batch, padding it, until the last row ends: one long answer makes
    the whole batch run to it. Here a row leaves the batch (its key/value cache rows too) at its EOS, its
    ``max_new_tokens``th token or when ``done`` says so, so later steps compute only the rows still answering.
    Positions count only the unmasked tokens and the logits are taken at the last position, as ``generate`` does, so
    each answer is the one ``generate`` would give, or its beginning when ``done`` stopped it (tests/test_generation.py
    checks it on the real model).

    Args:
        input_ids: ``[rows, length]``, the shared prefix's tokens included when ``cache`` holds them.
        attention_mask: ``[rows, length]``, 0 on the padding.
        cache: the prefix's key/value cache, repeated for the rows, or None.
        cached: how many leading tokens of ``input_ids`` ``cache`` already holds.
        done: called with a row's index and its answer tokens so far after each step; True stops the row there
            (``InvalidJsonStop``). None: rows stop at EOS or the limit only.
    """
    rows = input_ids.shape[0]
    answers: list[list[int]] = [[] for _ in range(rows)]
    active = torch.arange(rows, device=input_ids.device)  # the answer index of each row still in the batch
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    step_ids, step_positions = input_ids[:, cached:], positions[:, cached:]
    for _ in range(max_new_tokens):
        output = model(
            input_ids=step_ids,
            attention_mask=attention_mask,
            position_ids=step_positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = output.past_key_values
        tokens = output.logits[:, -1, :].float().argmax(-1)
        for row, token in zip(active.tolist(), tokens.tolist()):
            answers[row].append(token)
        keep = [
            i
            for i, row in enumerate(active.tolist())
            if answers[row][-1] != eos_token_id and not (done and done(row, answers[row]))
        ]
        if len(answers[int(active[0])]) >= max_new_tokens or not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=input_ids.device)
            cache.batch_select_indices(index)
            active, tokens, attention_mask = active[index], tokens[index], attention_mask[index]
            step_positions = step_positions[index]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=1)
        step_ids = tokens.unsqueeze(1)
        step_positions = step_positions[:, -1:] + 1
    return answers


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
    json_answers: bool = False,
) -> list[str]:
    """Greedy answers for a list of chat prompts (``generate_tokens``, decoded)."""
    ids = generate_tokens(model, tokenizer, conversations, decoding, share_prefix, json_answers)
    return [decode_answer(tokenizer, row) for row in ids]


@torch.no_grad()
def generate_tokens(
    model,
    tokenizer,
    conversations: list[list[dict]],
    decoding: Decoding = DEFAULT_DECODING,
    share_prefix: bool = True,
    json_answers: bool = False,
) -> list[list[int]]:
    """The greedy answer tokens of each chat prompt, up to and with the EOS (``answer_ids``), in batches padded on
    the left.

    With ``json_answers`` (answers scored by ``parse_answer``), an answer that can no longer parse stops
    ``decoding.invalid_tail_tokens`` tokens later (``InvalidJsonStop``): the beginning of what plain ``generate``
    gives, with the same score.

    Left padding keeps every prompt's last token at the end of the row, where generation
    continues; right padding would make the model continue after pad tokens.

    Every prompt of a set starts with the same tokens (the chat template's system turn with the
    instruction, and for a few-shot baseline the solved examples): with ``share_prefix`` those
    tokens run through the model once, and each batch starts from a copy of their key/value cache.
    Rows are then laid out as [shared prefix][padding][own tokens]; the attention mask hides the
    padding and positions count only unmasked tokens, so each row sees exactly what it would alone.
    Each batch decodes with ``greedy_decode``, which drops a row from the batch as soon as it is finished.
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
    batch_size, tail = decoding.batch_size, decoding.invalid_tail_tokens
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
        attention_mask = torch.tensor(mask, device=model.device)
        stop = InvalidJsonStop(tokenizer, tail) if json_answers and tail is not None else None
        if plain_greedy(model):
            answers = greedy_decode(
                model,
                input_ids,
                attention_mask,
                kwargs.get("past_key_values"),
                len(prefix),
                decoding.max_new_tokens,
                eos,
                stop,
            )
        else:  # the model's generation config changes the logits (a repetition penalty, ...): generate applies it
            if stop is not None:
                kwargs["stopping_criteria"] = StoppingCriteriaList([_RowsDone(stop, input_ids.shape[1])])
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=decoding.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
                **kwargs,
            )
            answers = [answer_ids(row.tolist(), eos) for row in output[:, input_ids.shape[1] :]]
            if stop is not None:  # a stopped row is padded to the batch's end: cut it where it stopped
                answers = [a[: stop.invalid_at[i] + tail] if i in stop.invalid_at else a for i, a in enumerate(answers)]
        for index, answer in zip(chunk, answers):
            by_index[index] = answer
    return [by_index[i] for i in range(len(rows))]
