"""``backend="auto"``: the faster exact runtime for a graph on this CPU, timed at its first load and remembered.

Which ONNX runtime is faster depends on the CPU family and on the graph, so no fixed rule holds
everywhere. On the 2-core AMD EPYC (Zen 4) the project started on, ONNX Runtime was level with or ahead
of OpenVINO on the casting bundle (a lone image split over idle cores); on an Intel Xeon the INT8 graph
alone took 2.64 ms in OpenVINO against 3.11 ms in ONNX Runtime (issue #32;
``benchmarks/bench_peers.py`` re-measures it on the CPU it runs on). So the first time a graph is loaded
on a machine, every runtime its export verified is built and timed on one image, as the Predictor
will run it (the same runners, the same thread count, a lone image on whatever cores are idle), in
interleaved rounds so that a burst of load from another process hits every runtime alike; the one with
the lower median wins, and ties within :data:`MARGIN` go to the first in rule order (ONNX Runtime).
The choice is kept in a small JSON file keyed by the graph's digest, the CPU model, the runtime
versions and the thread count, so later loads build only the winner and time nothing.

Only a quiet machine is timed: with other threads running, ONNX Runtime keeps a lone image on one core
(it splits it over idle cores only), so a choice timed beside a training job would be kept for the idle
machine it does not describe (seen on this project's Intel Xeon: OpenVINO chosen beside a training run
for a graph ONNX Runtime runs faster when idle). When another thread is runnable before or after the
timing (:func:`machine_busy`, from ``/proc/loadavg``), the load takes the rule's runtime, says so, and
remembers nothing: a later load times it again.

Cache file: ``$DEFECTLENS_CACHE_DIR/runtimes.json``, else ``$XDG_CACHE_HOME/defectlens/``, else
``~/.cache/defectlens/``. When it cannot be written the choice holds for this process only.
``DEFECTLENS_AUTO_RUNTIME=rule`` turns the timing off: ``auto`` then takes the first verified runtime
in rule order (reproducible deployments, and the test suite, which must not depend on timing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.machine import cpu_label, versions
from defectlens.inference import backends
from defectlens.inference.backends import RUNTIME_LABELS

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder.
CACHE_ENV = "DEFECTLENS_CACHE_DIR"
#: Environment variable choosing how ``auto`` decides: ``measure`` (default) or ``rule``.
MODE_ENV = "DEFECTLENS_AUTO_RUNTIME"
MODES = ("measure", "rule")
#: Timed calls per runtime (after :data:`WARMUP` untimed ones), interleaved between runtimes.
ROUNDS = 30
WARMUP = 5
#: A runtime must be at least this much faster (relative, on the median) to displace an earlier one.
MARGIN = 0.03
#: Version of the cache's record layout; a record of another version is ignored.
LAYOUT = 1

Built = tuple[Callable[[np.ndarray], np.ndarray], Any]


@dataclass
class Choice:
    """The runtime ``auto`` took, the runner built for it, and how it was decided."""

    runtime: str
    built: Built
    how: str  # "only one verified", "rule", "rule (machine busy: not timed)", "measured", "cached"
    p50_ms: dict[str, float] = field(default_factory=dict)
    key: str = ""
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """What ``Predictor.info()`` shows about the choice."""
        return {"runtime": self.runtime, "how": self.how, "p50_ms": dict(self.p50_ms), "notes": list(self.notes)}


def mode() -> str:
    """How ``auto`` decides here (:data:`MODE_ENV`), ``measure`` when unset.

    Raises:
        DefectlensError: for a value other than those of :data:`MODES`.
    """
    value = os.environ.get(MODE_ENV, "measure").strip().lower() or "measure"
    if value not in MODES:
        raise DefectlensError(f"{MODE_ENV}={value!r}: choose one of {', '.join(MODES)}")
    return value


def cache_file() -> Path:
    """Where measured choices are kept (see the module docstring)."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder) / "runtimes.json"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "defectlens" / "runtimes.json"


def choice_key(graph: bytes, runtimes: Sequence[str], threads: int) -> str:
    """The cache key: what the timing depends on (graph, CPU model with its family, model and widest vector
    extension, runtime versions, threads): a cache carried to another generation of the same model name (a
    migrated VM) measures again."""
    found = versions()
    libs = ",".join(f"{r}={found.get(RUNTIME_LABELS.get(r, r), '?')}" for r in sorted(runtimes))
    digest = hashlib.sha256(graph).hexdigest()[:20]
    return f"{digest}|{cpu_label()}|{libs}|threads={threads}"


def read_cache(path: Path) -> dict[str, Any]:
    """The cache's records ({} when absent, unreadable or of another layout: it is only a cache)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("layout") != LAYOUT or not isinstance(data.get("choices"), dict):
        return {}
    return dict(data["choices"])


def remember(path: Path, key: str, record: dict[str, Any]) -> bool:
    """Add ``record`` under ``key`` (atomic replace); False when the file cannot be written."""
    choices = read_cache(path)
    choices[key] = record
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"layout": LAYOUT, "choices": choices}, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("runtime choice not cached (%s: %s); it holds for this process only", path, exc)
        with contextlib.suppress(OSError):  # the folder itself is not there, or not a folder
            tmp.unlink(missing_ok=True)
        return False
    return True


def machine_busy(samples: int = 5, gap_s: float = 0.01) -> bool:
    """Whether another thread was runnable at any of ``samples`` instants (never busy where unknown)."""
    for i in range(samples):
        if (backends.others_running() or 0) > 0:
            return True
        if i + 1 < samples:
            time.sleep(gap_s)
    return False


def time_runners(runners: dict[str, Callable[[np.ndarray], Any]], sample: np.ndarray) -> dict[str, float]:
    """Median milliseconds of one call per runner on ``sample``: :data:`WARMUP` untimed calls each,
    then :data:`ROUNDS` rounds that call every runner once, in turn."""
    for run in runners.values():
        for _ in range(WARMUP):
            run(sample)
    laps: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, run in runners.items():
            start = time.perf_counter()
            run(sample)
            laps[name].append((time.perf_counter() - start) * 1000.0)
    return {name: round(statistics.median(values), 4) for name, values in laps.items()}


def fastest(p50_ms: dict[str, float], order: Sequence[str]) -> str:
    """The runtime with the lowest median; one earlier in ``order`` keeps its place unless another is
    more than :data:`MARGIN` faster.

    Example:
        >>> fastest({"onnx": 3.0, "openvino": 2.95}, ["onnx", "openvino"])
        'onnx'
        >>> fastest({"onnx": 3.11, "openvino": 2.64}, ["onnx", "openvino"])
        'openvino'
    """
    best = order[0]
    for name in order[1:]:
        if p50_ms[name] < p50_ms[best] * (1.0 - MARGIN):
            best = name
    return best


def choose(
    graph: bytes,
    candidates: Sequence[str],
    build: Callable[[str], Built],
    *,
    threads: int,
    sample_shape: tuple[int, ...],
) -> Choice:
    """The runtime ``auto`` runs ``graph`` on, with its runner already built.

    Args:
        graph: the ONNX bytes (their digest keys the cache).
        candidates: the runtimes the export verified and that are installed here, in rule order.
        build: builds the runner for one runtime (raises DefectlensError when it cannot).
        threads: the thread count the runners are built with (part of the key).
        sample_shape: one input, (1, C, H, W), to time on.

    Raises:
        DefectlensError: when no candidate is given or none can be built.
    """
    if not candidates:
        raise DefectlensError("no runtime to choose from")
    if len(candidates) == 1 or mode() == "rule":
        how = "only one verified" if len(candidates) == 1 else "rule"
        return Choice(candidates[0], build(candidates[0]), how)
    path, key = cache_file(), choice_key(graph, candidates, threads)
    record = read_cache(path).get(key)
    if isinstance(record, dict) and record.get("runtime") in candidates:
        runtime = str(record["runtime"])
        return Choice(runtime, build(runtime), "cached", dict(record.get("p50_ms") or {}), key)
    if machine_busy():
        return Choice(candidates[0], build(candidates[0]), "rule (machine busy: not timed)", key=key)
    return _measure(candidates, build, key=key, path=path, sample_shape=sample_shape)


def _measure(
    candidates: Sequence[str], build: Callable[[str], Built], *, key: str, path: Path, sample_shape: tuple[int, ...]
) -> Choice:
    built: dict[str, Built] = {}
    notes = []
    for runtime in candidates:
        try:
            built[runtime] = build(runtime)
        except DefectlensError as exc:  # e.g. OpenVINO cannot compile it here: the others still can
            notes.append(f"{runtime}: {exc}")
    if not built:
        raise DefectlensError("; ".join(notes))
    order = [r for r in candidates if r in built]
    sample = np.random.default_rng(0).random(sample_shape, dtype=np.float32)
    try:
        p50 = time_runners({r: built[r][0] for r in order}, sample) if len(order) > 1 else {}
    except Exception as exc:  # a graph that fails on its own input shape: the Predictor's probe names it
        notes.append(f"not timed: {type(exc).__name__}: {str(exc)[:200]}")
        p50 = {}
    runtime = fastest(p50, order) if p50 else order[0]
    if p50 and machine_busy():  # something started while timing: the figures are not the idle machine's
        notes.append("the machine became busy while timing: not remembered")
    elif p50 and not notes:  # a runtime that failed to build here is not a choice to remember
        remember(path, key, {"runtime": runtime, "p50_ms": p50, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log.info("auto runtime: %s (median ms of one image: %s)", runtime, p50)
    return Choice(runtime, built[runtime], "measured", p50, key, notes)
