"""Vectorised Hamming distances and duplicate grouping against a brute-force reference."""

from __future__ import annotations

import numpy as np

from defectlens.data.dedup import (
    group_duplicates,
    group_size_histogram,
    hashes_to_uint64,
    near_pairs,
    nearest_distances,
)


def _hexes(rng: np.random.Generator, n: int) -> list[str]:
    return ["".join(f"{int(x):016x}" for x in rng.integers(0, 2**63, 4, dtype=np.int64)) for _ in range(n)]


def _flip(h: str, bits: list[int]) -> str:
    v = int(h, 16)
    for b in bits:
        v ^= 1 << int(b)
    return f"{v:064x}"


def test_near_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    hexes = _hexes(rng, 300)
    hexes += [_flip(hexes[i], list(rng.choice(256, int(rng.integers(0, 12)), replace=False))) for i in range(40)]
    ints = [int(h, 16) for h in hexes]
    brute = {
        (i, j) for i in range(len(ints)) for j in range(i + 1, len(ints)) if bin(ints[i] ^ ints[j]).count("1") <= 8
    }
    got = {tuple(p) for p in near_pairs(hashes_to_uint64(hexes), 8).tolist()}
    assert got == brute and len(brute) >= 20
    nn = nearest_distances(hashes_to_uint64(hexes))
    assert nn[300] == min(bin(ints[300] ^ ints[k]).count("1") for k in range(len(ints)) if k != 300)


def test_group_duplicates_exact_near_and_chain() -> None:
    rng = np.random.default_rng(1)
    a, b, c = _hexes(rng, 3)
    keys = ["k0", "k1", "k2", "k3", "k4", "k5"]
    sha = ["s0", "s0", "s2", "s3", "s4", ""]
    # k2~k3 near (3 bits), k3~k4 near (3 more bits): chained into one group; k5 unrelated
    ph = [a, None, b, _flip(b, [1, 2, 3]), _flip(b, [1, 2, 3, 4, 5, 6]), c]
    groups, counts = group_duplicates(keys, sha256=sha, phash=ph, threshold=3)
    assert groups == ["k0", "k0", "k2", "k2", "k2", "k5"]
    assert counts == {"exact_pairs": 1, "near_pairs": 2}
    assert group_size_histogram(groups) == {"1": 1, "2": 1, "3": 1}
    assert group_duplicates(keys, sha256=sha, phash=ph, threshold=-1)[0] == ["k0", "k0", "k2", "k3", "k4", "k5"]
