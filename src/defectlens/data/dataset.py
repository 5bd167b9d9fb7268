"""The in-memory training cache: every image decoded and resized once, kept as uint8 tensors.

Images go through :func:`defectlens.data.images.preprocess` (the same function the Predictor
uses), so training sees byte-for-byte what inference will see. Decoding runs in a small process
pool; the result can be saved as a ``.npy`` file keyed by the files and the spec, so a second run on
the same data starts at once. Augmentation then works on batches of these tensors.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.data.images import preprocess
from defectlens.data.manifest import Manifest, Record

if TYPE_CHECKING:
    import torch

    from defectlens.core.spec import ModelSpec


@dataclass
class CachedSplit:
    """One split in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), and its records."""

    images: torch.Tensor
    labels: torch.Tensor
    records: list[Record]
    seconds: float = 0.0  # time spent decoding (0 when read from the disk cache)

    def __len__(self) -> int:
        return len(self.records)


def _decode(args: tuple[str, ModelSpec]) -> np.ndarray:
    path, spec = args
    return preprocess(path, spec)


def decode_all(
    paths: list[str], spec: ModelSpec, *, workers: int = 2, progress: Progress | None = None, label: str = "images"
) -> np.ndarray:
    """Preprocess every path into one uint8 array (N, C, H, W), with ``workers`` processes."""
    if not paths:
        return np.zeros((0, spec.in_channels, spec.input_size, spec.input_size), dtype=np.uint8)
    jobs = [(p, spec) for p in paths]
    arrays = []
    with (progress or Progress()).phase(f"decoding {label}", total=len(paths), unit="img") as phase:
        if workers <= 1 or len(paths) < 64:
            for job in jobs:
                arrays.append(_decode(job))
                phase.advance()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for arr in pool.map(_decode, jobs, chunksize=32):
                    arrays.append(arr)
                    phase.advance()
    return np.stack(arrays)


def cache_key(records: list[Record], spec: ModelSpec) -> str:
    """Hash of the image references, their content hashes and the preprocessing settings."""
    h = hashlib.sha256()
    h.update(json.dumps([spec.input_size, spec.in_channels, spec.interpolation, spec.resize]).encode())
    for r in records:
        h.update(f"{r.path}\0{r.sha256}\0".encode())
    return h.hexdigest()[:16]


def load_split(
    manifest: Manifest,
    split: str,
    spec: ModelSpec,
    *,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> CachedSplit:
    """Decode one split of ``manifest`` into memory.

    Args:
        manifest: the dataset.
        split: ``train``, ``val`` or ``test``.
        spec: input size, channels and interpolation.
        workers: decoding processes.
        cache_dir: folder for a ``.npy`` copy of the decoded split (skipped when ``None``).
        progress: receives the decoding phase.

    Raises:
        DefectlensError: when the split is empty.
    """
    import torch

    records = manifest.split(split)
    if not records:
        raise DefectlensError(
            f"dataset has no {split!r} images (counts per split: {manifest.counts()}); "
            "assign splits with 'defectlens data split'"
        )
    labels = torch.tensor([manifest.label_index(r) for r in records], dtype=torch.int64)
    start = time.perf_counter()
    cached = Path(cache_dir) / f"{split}-{cache_key(records, spec)}.npy" if cache_dir else None
    arr = _read_cache(cached, (len(records), spec.in_channels, spec.input_size, spec.input_size))
    if arr is not None:
        return CachedSplit(torch.from_numpy(arr), labels, records, 0.0)
    paths = [str(manifest.resolve(r)) for r in records]
    arr = decode_all(paths, spec, workers=workers, progress=progress, label=f"{split} split")
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(cached)
        except OSError:
            pass  # a read-only dataset folder only costs the next run a re-decode
    return CachedSplit(torch.from_numpy(arr), labels, records, time.perf_counter() - start)


def _read_cache(path: Path | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached split, or None when there is none or it is unusable (truncated by a crash, another
    shape or type): the split is then decoded again and the cache rewritten, never trusted blindly."""
    if path is None or not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape != shape:
        return None
    return arr


def data_fingerprint(manifest: Manifest) -> str:
    """What the model was trained on: sha256 of the sorted content hashes of the train records
    (their paths where a hash is missing). Recorded in checkpoints and bundles."""
    keys = sorted(r.sha256 or r.path for r in manifest.split("train"))
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()
