"""Duplicates, exact and near: a normalized key for exact ones, and MinHash LSH with a verifying Jaccard check on
word 5-gram shingles for near ones (``datasketch``, whose signatures ``minhash`` reproduces exactly)."""

from __future__ import annotations

import hashlib
import re
from array import array
from collections import defaultdict

import numpy as np
from datasketch import MinHash, MinHashLSH
from datasketch.minhash import _fmix  # the scheme's pre-mix, so signatures match MinHash's exactly

from ftlib.data.records import normalize_text


def dedup_key(text: str) -> str:
    """Exact-duplicate key: case, whitespace and punctuation do not make a new ticket."""
    return " ".join(_PUNCTUATION.sub(" ", normalize_text(text)).split())


_PUNCTUATION = re.compile(r"[^\w\s<>]")


SHINGLE_SIZE = 5


NUM_PERM = 128


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[str]:
    """The character ``size``-grams of a text's ``dedup_key`` (the key itself when it is shorter)."""
    key = dedup_key(text)
    return {key[i : i + size] for i in range(max(1, len(key) - size + 1))}


def minhash(text: str, num_perm: int = NUM_PERM) -> MinHash:
    signature = MinHash(num_perm=num_perm, seed=1)
    signature.update_batch([s.encode() for s in shingles(text)])
    return signature


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


class _Shingled:
    """Every text's shingles as ids into one vocabulary (4 bytes each), with each distinct shingle's 32-bit
    SHA-1 hash (``datasketch.hashfunc.sha1_hash32``, the hash ``minhash`` feeds MinHash), computed once."""

    def __init__(self, texts: list[str]):
        vocabulary: dict[str, int] = {}
        hashes, ids, offsets = array("I"), array("i"), array("q", [0])
        for text in texts:
            grams = shingles(text)
            for shingle in grams.difference(vocabulary):
                vocabulary[shingle] = len(hashes)
                hashes.append(int.from_bytes(hashlib.sha1(shingle.encode()).digest()[:4], "little"))
            ids.extend(map(vocabulary.__getitem__, grams))
            offsets.append(len(ids))
        self.ids = np.frombuffer(ids, dtype=np.int32)
        self.offsets = np.frombuffer(offsets, dtype=np.int64)
        self.hashes = np.frombuffer(hashes, dtype=np.uint32)

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def jaccard(self, i: int, j: int) -> float:
        """``jaccard`` of texts ``i`` and ``j``, from their shingle ids."""
        a, b = self.row(i), self.row(j)
        common = len(np.intersect1d(a, b, assume_unique=True))
        return common / max(1, len(a) + len(b) - common)

    def signatures(self, num_perm: int, chunk: int = 256) -> np.ndarray:
        """Every text's MinHash values, equal to ``minhash(text, num_perm).hashvalues``: the same hashes,
        permutations and arithmetic (datasketch's default ``affine32`` scheme), computed a chunk of texts at a
        time with each distinct hash permuted once per chunk. Any other scheme falls back to ``MinHash``."""
        reference = MinHash(num_perm=num_perm, seed=1)
        n = len(self.offsets) - 1
        out = np.empty((n, num_perm), dtype=reference.hashvalues.dtype)
        if reference.scheme != "affine32":  # a datasketch whose default differs: its own, slower path
            for i in range(n):
                signature = MinHash(num_perm=num_perm, seed=1, hashfunc=int)  # the hashes are already SHA-1's
                signature.update_batch(self.hashes[self.row(i)].tolist())
                out[i] = signature.hashvalues
            return out
        a, b = reference.permutations
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            lo, hi = self.offsets[start], self.offsets[stop]
            distinct, inverse = np.unique(self.hashes[self.ids[lo:hi]], return_inverse=True)
            permuted = _fmix(distinct, 32)[:, None] * a + b
            out[start:stop] = np.minimum.reduceat(permuted[inverse], self.offsets[start:stop] - lo, axis=0)
        return out


def near_duplicate_groups(texts: list[str], threshold: float = 0.7, num_perm: int = NUM_PERM) -> list[list[int]]:
    """Groups of indices whose texts are near-duplicates (MinHash LSH candidates, confirmed by exact Jaccard).

    Each group lists its members in input order; singletons are left out. Candidates are the pairs whose
    signatures agree on a whole band of ``datasketch.MinHashLSH``'s banding for ``threshold`` (the pairs its
    ``query`` returns); each text is shingled and hashed once, and a candidate already in the same group
    needs no Jaccard. Time and memory grow with the number of texts and of candidate pairs, not all pairs.
    """
    shingled = _Shingled(texts)
    signatures = shingled.signatures(num_perm)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start, stop in MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges:
        buckets: dict[bytes, list[int]] = defaultdict(list)
        band = np.ascontiguousarray(signatures[:, start:stop])
        for index, key in enumerate(band.view(f"V{band.shape[1] * band.itemsize}").ravel().tolist()):
            buckets[key].append(index)
        for bucket in buckets.values():
            for position, index in enumerate(bucket[1:], 1):
                for other in bucket[:position]:
                    a, b = root(index), root(other)
                    if a != b and shingled.jaccard(index, other) >= threshold:
                        parent[a] = b
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(texts)):
        groups[root(index)].append(index)
    return [sorted(g) for g in groups.values() if len(g) > 1]
