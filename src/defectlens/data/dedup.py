"""Duplicate detection: exact (sha256) and near (perceptual hash) duplicates, grouped by union-find.

The split uses these groups so that a part photographed twice (or a file copied twice) can never
sit on both sides of a train/test boundary. Near duplicates are found with ``imagehash.phash``
with ``hash_size=16``: a 256-bit DCT hash of the 64x64 grey image); two images are linked when
the Hamming distance of their hashes is at most ``threshold``. The pairwise comparison is
vectorised with NumPy in row blocks (6.6k hashes -> 22M pairs in about a second).

Why 256 bits and not imagehash's default 64: on the casting data every photo shows the same
impeller model on the same background, and 64-bit hashes cannot tell distinct parts apart:
645 of 6,633 casting images have another image at distance 0, and any threshold >= 4 chains
2,415+ images into one group through union-find (measured once with ``imagehash.phash(hash_size=8)``
on the imported casting manifest; ``benchmarks/bench_import.py`` reports the 256-bit figures).
See :data:`DEFAULT_PHASH_THRESHOLD` for the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

#: Hamming distance (out of 256 bits) at or below which two images count as near duplicates.
#: Measured on the real data with 256-bit hashes: NEU-DET's only pair under 36 is the
#: byte-identical patches_101/105 pair (distance 0), so any threshold up to 35 finds exactly it.
#: On casting (6,633 images), threshold 8 puts 556 images in 265 groups of 2-10 images (largest
#: 10, 2 groups mixing def/ok); 12 gives 1,036 images, largest 22; 32 already chains 519 images
#: into one group. 8 (3% of the bits) stays well below the chaining regime while still catching
#: the re-shot/augmented copies of a part. Group sizes are reported by every split.
DEFAULT_PHASH_THRESHOLD = 8
HASH_SIZE = 16  # phash side: 16 -> 256-bit hashes (64 hex characters)

_BLOCK = 256  # rows per block: 256 x 6633 x 4 uint64 = 54 MB, bounded whatever the dataset size


def phash_hex(img: Image.Image) -> str:
    """256-bit perceptual hash of an image as 64 hex characters.

    The image goes through :func:`~defectlens.data.images.convert_mode` first so that 16-bit,
    palette and transparent images are hashed as they will be seen in training.
    """
    import imagehash

    from defectlens.data.images import convert_mode

    return str(imagehash.phash(convert_mode(img, 1), hash_size=HASH_SIZE))


def hashes_to_uint64(hexes: Sequence[str]) -> np.ndarray:
    """Parse hex hashes (all of one length, a multiple of 16 characters) into an ``(n, words)`` uint64 array."""
    if not hexes:
        return np.zeros((0, 1), dtype=np.uint64)
    width = len(hexes[0])
    if width % 16 or any(len(h) != width for h in hexes):
        raise ValueError("perceptual hashes must all have the same length, a multiple of 16 hex characters")
    return np.array([[int(h[k : k + 16], 16) for k in range(0, width, 16)] for h in hexes], dtype=np.uint64)


def _block_distances(block: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    return np.bitwise_count(block[:, None, :] ^ hashes[None, :, :]).sum(axis=2, dtype=np.int64)


def near_pairs(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, whose Hamming distance is ``<= threshold``.

    Returns:
        An int array of shape ``(n_pairs, 2)``.
    """
    n = len(hashes)
    out: list[np.ndarray] = []
    if n < 2 or threshold < 0:
        return np.zeros((0, 2), dtype=np.int64)
    for start in range(0, n, _BLOCK):
        block = hashes[start : start + _BLOCK]
        dist = _block_distances(block, hashes)
        rows, cols = np.nonzero(dist <= threshold)
        rows = rows + start
        keep = rows < cols
        out.append(np.stack([rows[keep], cols[keep]], axis=1))
    return np.concatenate(out).astype(np.int64)


def nearest_distances(hashes: np.ndarray) -> np.ndarray:
    """Hamming distance from each hash to its nearest other hash (the bit count for a lone hash)."""
    n, bits = len(hashes), 64 * hashes.shape[1]
    best = np.full(n, bits, dtype=np.int64)
    for start in range(0, n, _BLOCK):
        block = hashes[start : start + _BLOCK]
        dist = _block_distances(block, hashes)
        idx = np.arange(len(block))
        dist[idx, idx + start] = bits + 1  # ignore self
        best[start : start + len(block)] = dist.min(axis=1, initial=bits)
    return best


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def group_duplicates(
    keys: Sequence[str],
    *,
    sha256: Sequence[str],
    phash: Sequence[str | None],
    threshold: int = DEFAULT_PHASH_THRESHOLD,
) -> tuple[list[str], dict[str, int]]:
    """Union exact and near duplicates into groups.

    Args:
        keys: one stable name per image (the manifest path); a group is named after its smallest key.
        sha256: content hash per image ("" when unknown: never matched exactly).
        phash: perceptual hash per image as hex (None when unknown: never matched as near).
        threshold: Hamming distance for near duplicates; a negative value disables them.

    Returns:
        ``(group name per image, {"exact_pairs": n, "near_pairs": n})``.
    """
    n = len(keys)
    uf = _UnionFind(n)
    first_by_sha: dict[str, int] = {}
    exact = 0
    for i, digest in enumerate(sha256):
        if not digest:
            continue
        if digest in first_by_sha:
            uf.union(first_by_sha[digest], i)
            exact += 1
        else:
            first_by_sha[digest] = i
    known = [i for i, h in enumerate(phash) if h]
    hexes = [h for h in phash if h]
    pairs = near_pairs(hashes_to_uint64(hexes), threshold) if hexes else np.zeros((0, 2), dtype=np.int64)
    for a, b in pairs.tolist():
        uf.union(known[int(a)], known[int(b)])
    roots = [uf.find(i) for i in range(n)]
    name_of: dict[int, str] = {}
    for i in range(n):
        r = roots[i]
        if r not in name_of or keys[i] < name_of[r]:
            name_of[r] = keys[i]
    return [name_of[r] for r in roots], {"exact_pairs": exact, "near_pairs": len(pairs)}


def group_size_histogram(groups: Iterable[str]) -> dict[str, int]:
    """``{group size: number of groups}`` with sizes as strings (JSON keys), sorted by size."""
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    hist: dict[int, int] = {}
    for s in sizes.values():
        hist[s] = hist.get(s, 0) + 1
    return {str(k): hist[k] for k in sorted(hist)}


__all__ = [
    "DEFAULT_PHASH_THRESHOLD",
    "HASH_SIZE",
    "group_duplicates",
    "group_size_histogram",
    "hashes_to_uint64",
    "near_pairs",
    "nearest_distances",
    "phash_hex",
]
