"""Generation against llama.cpp: the course's own GGUF export, loaded by llama.cpp, against ftlib and plain
``model.generate`` on the same prompts.

    pip install llama-cpp-python    # a source build: minutes; not part of `make test`
    PYTHONPATH=. python benchmarks/llama_cpp_speed.py [--model NAME_OR_PATH] [--n 32] [--dtype f32] [--json out.json]

The GGUF is written by ``ftlib.engine.gguf.write_gguf`` (what lesson 07's ``ship`` writes) from ``--model``, into
a temporary folder. The prompts are the first ``--n`` field-test tickets, zero-shot and with lesson 05's three
solved examples, as in ``benchmarks/generation_speed.py``. Every side decodes greedily up to ``--max-new-tokens``
on the same number of CPU threads, one after the other in this one process, so the ratios are measured under the
same load:
- plain: ``model.generate`` on left-padded batches (``generation_speed.plain_generate``);
- ftlib: ``inference.generate_tokens`` (batches, the shared prompt prefix computed once);
- llama.cpp: ``Llama.generate`` one prompt after the other, as llama-cpp-python serves a single user; it keeps
  the previous prompt's key/value cache and re-uses its longest common prefix, so the shared instruction runs once.

Printed per prompt style: seconds and generated tokens/s for each side, the ratios ftlib / llama.cpp and
ftlib / plain, and how many of llama.cpp's answers are identical to ftlib's (both fp32 for ``--dtype f32``, but
the two libraries sum in different orders, so a near-tie between two tokens can go either way: each difference
is named with the first token where the answers part). This is also the runtime check of the export: llama.cpp
loads the file and answers as the transformers model does.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine  # noqa: E402
from generation_speed import plain_generate  # noqa: E402

from ftlib.core.config import Decoding  # noqa: E402
from ftlib.core.fileio import write_json  # noqa: E402
from ftlib.core.runtime import configure_cpu_threads  # noqa: E402
from ftlib.core.tasks import get_task  # noqa: E402
from ftlib.data.batches import prompt_text  # noqa: E402
from ftlib.data.records import read_jsonl  # noqa: E402
from ftlib.data.samples import generate_clean_tickets  # noqa: E402
from ftlib.engine import inference  # noqa: E402
from ftlib.engine.gguf import GGUF_DTYPES, write_gguf  # noqa: E402
from ftlib.engine.models import DEFAULT_MODEL, load_model  # noqa: E402
from ftlib.engine.profiles import field_test_path  # noqa: E402
from ftlib.measure import evaluate  # noqa: E402


def llama_cpp_generate(llm, prompts: list[list[int]], max_new_tokens: int, eos: int) -> list[list[int]]:
    """Greedy answers from llama.cpp, one prompt at a time, each cut after its EOS as ``inference.answer_ids`` cuts."""
    answers = []
    for ids in prompts:
        answer: list[int] = []
        # temp=0 is llama.cpp's greedy sampler; repeat_penalty=1 and top_k=1 leave the argmax alone.
        for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
            answer.append(token)
            if token == eos or len(answer) >= max_new_tokens:
                break
        answers.append(answer)
    return answers


def first_difference(a: list[int], b: list[int]) -> int:
    """The index of the first token where two answers part (the shorter length when one extends the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registry name or local model folder (a Llama)")
    parser.add_argument("--n", type=int, default=32, help="prompts per style (field-test tickets)")
    parser.add_argument("--batch-size", type=int, default=32, help="ftlib's and plain generate's batch")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", choices=GGUF_DTYPES, default="f32", help="the GGUF's weights")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    try:
        from llama_cpp import Llama, __version__
    except ImportError:
        parser.error("llama-cpp-python is not installed: pip install llama-cpp-python (a source build, minutes)")
    threads = configure_cpu_threads()
    task = get_task("support_tickets")
    tickets = read_jsonl(field_test_path("support_tickets"))[: args.n]
    shots = evaluate.few_shot_examples(generate_clean_tickets(60, random.Random(0)), task, k=3)
    model, tokenizer = load_model(args.model)
    folder = Path(tempfile.mkdtemp(prefix="llama-cpp-bench-"))
    gguf_path = write_gguf(model, tokenizer, folder / f"model-{args.dtype}.gguf", dtype=args.dtype)
    # n_batch 512: llama.cpp's default prompt chunk; n_ctx holds the longest few-shot prompt and its answer.
    llm = Llama(str(gguf_path), n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    print(
        f"model {args.model} as GGUF {args.dtype} ({gguf_path.stat().st_size / 2**20:.0f} MiB), llama-cpp-python "
        f"{__version__}; {len(tickets)} prompts per style, batch {args.batch_size}, {threads} CPU thread(s)"
    )
    figures = {
        "model": args.model,
        "gguf_dtype": args.dtype,
        "llama_cpp_python": __version__,
        "prompts": len(tickets),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "threads": threads,
        "machine": machine(),
    }
    decoding = Decoding(args.batch_size, args.max_new_tokens)
    eos = tokenizer.eos_token_id
    for style, examples in (("zero-shot", ()), ("few-shot (3 examples)", shots)):
        conversations = [task.prompt_messages(t, examples) for t in tickets]
        prompts = [tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations]
        seconds = {}
        start = time.perf_counter()
        plain_generate(model, tokenizer, conversations, args.batch_size, args.max_new_tokens)
        seconds["plain"] = time.perf_counter() - start
        start = time.perf_counter()
        ours = inference.generate_tokens(model, tokenizer, conversations, decoding)
        seconds["ftlib"] = time.perf_counter() - start
        llm.reset()  # no cache carried over from the other style
        start = time.perf_counter()
        theirs = llama_cpp_generate(llm, prompts, args.max_new_tokens, eos)
        seconds["llama.cpp"] = time.perf_counter() - start
        tokens = sum(len(a) for a in ours)
        differ = {
            tickets[i].get("id", str(i)): first_difference(a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b
        }
        row = {
            "mean_prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
            "ftlib_generated_tokens": tokens,
            "llama_cpp_generated_tokens": sum(len(a) for a in theirs),
            "seconds": {side: round(s, 2) for side, s in seconds.items()},
            "ftlib_tokens_per_second": round(tokens / seconds["ftlib"], 1),
            "llama_cpp_tokens_per_second": round(sum(len(a) for a in theirs) / seconds["llama.cpp"], 1),
            "ftlib_vs_llama_cpp": round(seconds["llama.cpp"] / seconds["ftlib"], 2),
            "ftlib_vs_plain": round(seconds["plain"] / seconds["ftlib"], 2),
            "identical_to_ftlib": len(tickets) - len(differ),
            "differ_at_token": differ,
        }
        figures[style] = row
        print(
            f"{style}: prompts of {row['mean_prompt_tokens']:.0f} tokens on average; "
            + ", ".join(f"{side} {s:.1f} s" for side, s in seconds.items())
            + f"; ftlib {row['ftlib_tokens_per_second']:.0f} vs llama.cpp {row['llama_cpp_tokens_per_second']:.0f} "
            f"generated tokens/s: ftlib/llama.cpp {row['ftlib_vs_llama_cpp']:.2f}x, ftlib/plain "
            f"{row['ftlib_vs_plain']:.2f}x; llama.cpp answers identical to ftlib's {row['identical_to_ftlib']}/"
            f"{len(tickets)}" + (f" (differ at token: {differ})" if differ else "")
        )
    if args.json:
        write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
