"""What the sample generators share: their phrase banks as data (``data/generators/*.yaml``), and ``distinct``,
which keeps a generated set free of duplicates so that every duplicate in a raw file is one injected on purpose."""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

GENERATORS = Path(__file__).resolve().parents[2] / "data" / "generators"


@cache
def load_bank(name: str) -> dict:
    """``data/generators/<name>.yaml``, parsed once per process (callers must not change it)."""
    import yaml

    return yaml.safe_load((GENERATORS / f"{name}.yaml").read_text(encoding="utf-8"))


def distinct(make, n: int, rng: random.Random, *text_of, max_similarity: float = 0.6) -> list[dict]:
    """``n`` records from ``make(rng, index)`` such that no two texts (by each of the ``text_of`` functions)
    share a normalized form or exceed ``max_similarity`` (5-gram Jaccard): every duplicate in a raw file is
    then one injected on purpose."""
    from datasketch import MinHashLSH

    from ftlib.data.dedup import dedup_key, jaccard, minhash

    indexes = [MinHashLSH(threshold=max_similarity * 0.8, num_perm=128) for _ in text_of]
    records, keys, attempts = [], [set() for _ in text_of], 0
    while len(records) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could only make {len(records)} distinct records of {n}")
        record = make(rng, len(records))
        texts = [text(record) for text in text_of]
        if any(dedup_key(text) in seen for text, seen in zip(texts, keys, strict=True)):
            continue
        signatures = [minhash(text) for text in texts]
        if any(
            jaccard(text, text_of_one(records[i])) >= max_similarity
            for text, text_of_one, lsh, signature in zip(texts, text_of, indexes, signatures, strict=True)
            for i in lsh.query(signature)
        ):
            continue
        for text, seen, lsh, signature in zip(texts, keys, indexes, signatures, strict=True):
            lsh.insert(len(records), signature)
            seen.add(dedup_key(text))
        records.append(record)
    return records
