"""Archive scoring on Ray Data: ``defectlens predict ARCHIVE --engine ray``.

The rows, their columns and the per-file error rules are those of ``predict DIR``
(:mod:`defectlens.workflows.predict`): each actor decides through its :func:`predictions` and
:func:`row_of`, so the two engines cannot disagree. The steps, each done in one place:

1. **list** (driver): the inputs exactly as ``predict DIR`` finds them (:func:`collect_inputs`: the same
   files, ground truth from class subfolders, and error rows for FIFOs, dangling symlinks...); an
   object-store URI (``s3://``, ``gs://``, ``file://``...) is listed through pyarrow's file systems (an entry
   that is no regular file gets its error row from the driver, unopened; pyarrow lists no dangling symlink).
   Files that already have a row in the output's Parquet are left out: a re-run resumes.
2. **read**: a local file is opened by the actor that scores it, through the same path decoder as local
   predict, so a file that vanished or cannot be opened is an error row with its reason, as there,
   instead of a failed Ray read task; a URI's bytes are read by Ray (``read_binary_files``) and decoded
   under the same decode rule. A local folder must be at the same path on every node (shared storage).
3. **score**: ``map_batches`` over a pool of N actors, each holding one :class:`Predictor` on one core
   (one ONNX Runtime thread, ``num_cpus=1``).
4. **write** (driver): rows stream back and are written as Parquet parts, each whole or not at all (a
   temporary file renamed), so a crash loses at most the rows of the part being filled; at the end
   ``predictions.csv`` is written from every part, in input order, cell for cell what local predict writes.

Ray and pyarrow are imported inside the functions that use them: ``import defectlens`` stays cheap, and
without the ``[ray]`` extra the engine says how to install it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from defectlens.core.errors import DefectlensError
from defectlens.core.outputs import atomic_output, check_output, os_reason, output_error
from defectlens.core.profile import GateMode
from defectlens.core.progress import Progress
from defectlens.core.text import utf8_text
from defectlens.inference.predictor import Prediction, Predictor
from defectlens.workflows.predict import (
    CSV_FILE,
    FolderResult,
    _CsvSink,
    collect_inputs,
    output_folder,
    predictions,
    row_of,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyarrow import fs as pafs
    from ray.data import Dataset

#: The folder of Parquet parts in the output folder, beside ``predictions.csv``.
PARQUET_DIR = "predictions.parquet"
#: Rows per Parquet part: what a crash can cost at most (a re-run scores them again).
PART_ROWS = 5000
#: Files one actor call scores (model calls inside it take ``batch_size`` images each).
BLOCK_ROWS = 256
#: Seconds to wait for a Ray address to answer before saying it does not.
CONNECT_TIMEOUT_S = 5.0
INSTALL = "pip install 'defectlens[ray]'"
_STAMP = b"defectlens.archive"
_NUMBERS = frozenset({"confidence", "defect_probability", "threshold", "ood_score", "latency_ms"})


@dataclass(frozen=True)
class ArchiveModel:
    """The model each actor loads (the arguments of :meth:`Predictor.load`, on one thread) and how it decides."""

    path: str
    backend: str = "auto"
    precision: str = "auto"
    gate: GateMode = "refuse"
    threshold: float | None = None
    batch_size: int = 16

    def load(self) -> Predictor:
        return Predictor.load(self.path, backend=self.backend, threads=1, precision=self.precision, gate=self.gate)


@dataclass(frozen=True)
class Cluster:
    """Where to run: ``address`` of a Ray cluster (None: a local Ray on this machine's cores) and
    ``actors`` (None: one per CPU of the cluster)."""

    address: str | None = None
    actors: int | None = None


@dataclass
class ArchiveResult(FolderResult):
    """:class:`FolderResult` over every row of the output (this run's and earlier runs'), and what this run did."""

    parquet_path: Path | None = None
    class_names: tuple[str, ...] = ()
    scored: int = 0  # rows this run added
    skipped: int = 0  # inputs an earlier run had scored already
    actors: int = 0


@dataclass(frozen=True)
class Uri:
    """An object-store root: its file system (pyarrow), the path in it, and the scheme that names rows."""

    filesystem: pafs.FileSystem
    root: str
    scheme: str

    def name(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def truth(self, path: str, classes: frozenset[str]) -> str | None:
        """The class named by the object's first folder below the root, as for a local folder."""
        parts = path[len(self.root) :].strip("/").split("/")
        return parts[0] if len(parts) > 1 and parts[0] in classes else None


@dataclass(frozen=True)
class Listing:
    """The inputs (row names, in input order), their ground truth and the problems that make them error rows."""

    files: list[str]
    truth: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    uri: Uri | None = None


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data and pyarrow, or an error saying how to install them."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data
    except ImportError as exc:
        raise DefectlensError(f"--engine ray needs Ray Data and pyarrow ({exc}); install them: {INSTALL}") from None
    return ray


def score_archive(
    target: str | Path,
    *,
    model: ArchiveModel,
    out: str | Path | None = None,
    force: bool = False,
    cluster: Cluster | None = None,
    progress: Progress | None = None,
) -> ArchiveResult:
    """Score every file of ``target`` (a folder, a glob, a file, or an object-store URI) on Ray; write
    ``OUT/predictions.parquet/`` and ``OUT/predictions.csv``, one row per input, error rows included.

    A re-run with the same ``out`` scores only the files without a row (``force``: start again).

    Raises:
        DefectlensError: without the [ray] extra, for a Ray address that does not answer, a bad model or
            input, an output holding another model's rows, or a Ray run that failed (rows kept: re-run).
    """
    ray = import_ray()
    cluster = cluster or Cluster()
    predictor = model.load()  # here first: a bad model fails before any cluster work, and gives the columns
    folder = archive_folder(out, force=force)
    parts = folder / PARQUET_DIR
    listing = list_inputs(target, predictor.spec.class_names, skip=folder)
    schema = row_schema(predictor, model)
    done = set(scored_files(parts, schema))
    todo = [f for f in listing.files if f not in done]
    result = ArchiveResult(csv_path=folder / CSV_FILE, parquet_path=parts, skipped=len(listing.files) - len(todo))
    if todo:
        started = connect(ray, cluster.address)
        try:
            result.actors = _actors(ray, cluster, started=started)
            scored = _pipeline(ray, listing, todo, model=model, schema=schema, actors=result.actors)
            unopened = [f for f in todo if f in listing.problems] if listing.uri is not None else []
            first = score_rows(predictor, model, schema, unopened, truth=listing.truth, problems=listing.problems)
            result.scored = _run(ray, scored, first, schema=schema, parts=parts, total=len(todo), progress=progress)
        finally:
            if started:
                ray.shutdown()
    _finish(result, listing, predictor)
    return result


def archive_folder(out: str | Path | None, *, force: bool) -> Path:
    """The output folder: a new ``predictions[-N]`` without ``out``; ``out`` holding Parquet parts is
    resumed (``force``: emptied of earlier predictions first); one holding only a local run's
    ``predictions.csv`` is refused unless ``force``."""
    if out is None:
        return output_folder(None)
    folder = Path(out)
    check_output(folder, force=force, what="--out")
    parts = folder / PARQUET_DIR
    if force and parts.is_dir():
        shutil.rmtree(parts)
    if not parts.is_dir():
        output_folder(folder, force=force)  # refuses a local run's predictions.csv without --force
    try:
        parts.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(parts, exc) from None
    return folder


def list_inputs(target: str | Path, class_names: tuple[str, ...] | list[str], *, skip: Path) -> Listing:
    """The inputs as ``predict DIR`` lists them (an object-store URI through pyarrow), leaving out ``skip``."""
    if "://" in str(target):
        return _list_uri(str(target), frozenset(class_names))
    inputs = collect_inputs(target, class_names, output=skip / CSV_FILE)
    files, out = inputs.files, _real(skip)
    if Path(target).is_dir() and _real(Path(target)) in (out, *out.parents):  # never score our own Parquet parts
        files = [f for f in files if out not in _real(f).parents]
    if not files:
        raise DefectlensError(f"{target}: no files to score outside the output folder {skip}")
    return Listing(
        [str(f) for f in files],
        {str(f): t for f, t in inputs.truth.items()},
        {str(f): p for f, p in inputs.problems.items()},
    )


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compared as written
        return path.absolute()


def _list_uri(uri: str, classes: frozenset[str]) -> Listing:
    from pyarrow import ArrowException, fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
        odd: set[str] = set()
        if info.type == fs.FileType.File:
            paths = [root]
        else:
            found = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
            entries = [f for f in found if f.type != fs.FileType.Directory and not _hidden(f.path, root)]
            paths = sorted(f.path for f in entries)
            odd = {f.path for f in entries if f.type != fs.FileType.File}  # a FIFO, socket or device (file://)
    except (ArrowException, OSError, ValueError) as exc:
        raise DefectlensError(f"{uri}: cannot list this URI ({exc}); check the address and the credentials") from None
    if not paths:
        raise DefectlensError(f"{uri}: no files there to score")
    where = Uri(filesystem, root, uri.split("://", 1)[0])
    truth = {where.name(p): t for p in paths if (t := where.truth(p, classes))}
    problems = {where.name(p): "not a regular file (a FIFO, socket or device); not opened" for p in odd}
    return Listing([where.name(p) for p in paths], truth, problems, uri=where)


def _hidden(path: str, root: str) -> bool:
    return any(part.startswith(".") for part in path[len(root) :].split("/"))


def connect(ray: ModuleType, address: str | None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Join the Ray cluster at ``address`` (None: start a local one); True when this call started Ray
    (the caller then shuts it down). A Ray already running in this process is used as it is.

    Raises:
        DefectlensError: naming the address when nothing answers there within ``timeout_s``.
    """
    if address not in (None, "auto"):
        reachable(address, timeout_s=timeout_s)
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"--address {address}" if address else "a local Ray"
        raise DefectlensError(f"{where}: cannot start or join Ray ({exc})") from None
    return True


def reachable(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Check that something answers at a Ray address (``HOST:PORT`` or ``ray://HOST:PORT``) within
    ``timeout_s``, so a wrong address fails in seconds instead of Ray's minutes of retries.

    Raises:
        DefectlensError: naming the address, the reason and what to do.
    """
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise DefectlensError(
            f"--address {address}: give HOST:PORT (the head node's port, 6379 by default) or ray://HOST:PORT"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else os_reason(exc)
        raise DefectlensError(
            f"--address {address}: no Ray cluster answers there ({why}, waited at most {timeout_s:g} s); start one "
            "with `ray start --head` on that machine and pass the address it prints, or leave --address out to "
            "run on this machine"
        ) from None


def _actors(ray: ModuleType, cluster: Cluster, *, started: bool) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = cluster.actors or cpus
    if actors < 1:
        raise DefectlensError(f"--actors must be at least 1, got {actors}")
    if actors > cpus and started and cluster.address is None:  # they would wait for cores forever
        raise DefectlensError(f"--actors {actors}: this machine has {cpus} CPU cores for Ray; use at most {cpus}")
    return actors


def _pipeline(
    ray: ModuleType, listing: Listing, todo: list[str], *, model: ArchiveModel, schema: pa.Schema, actors: int
) -> Dataset:
    """The Ray dataset of the rows of ``todo``: the files' names (local files, opened by the actors) or their
    bytes (an object store, read by Ray), through ``map_batches`` on a pool of ``actors`` :class:`Scorer`."""
    blocks = max(actors, -(-len(todo) // BLOCK_ROWS))
    if listing.uri is None:
        rows = [{"file": f, "truth": listing.truth.get(f, ""), "problem": listing.problems.get(f, "")} for f in todo]
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
    else:
        paths = [f.split("://", 1)[1] for f in todo if f not in listing.problems]  # the others: see score_archive
        # reads take no CPU slot: with one actor per core a read task would wait for a core forever
        ds = (
            ray.data.read_binary_files(
                paths, filesystem=listing.uri.filesystem, include_paths=True, override_num_blocks=blocks, num_cpus=0
            )
            if paths
            else ray.data.from_items([])
        )
    return ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"model": model, "schema": schema, "uri": listing.uri},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        batch_size=BLOCK_ROWS,
        batch_format="pyarrow",
    )


def row_schema(predictor: Predictor, model: ArchiveModel) -> pa.Schema:
    """The Parquet schema of a row: the columns of :func:`row_of` in its order, numbers as nullable
    doubles (an empty cell of the CSV is a null), the rest as text; its metadata the model and settings."""
    import pyarrow as pa

    names = list(predictor.spec.class_names)
    sample = row_of(Prediction.error("", ""), names, None, _positive(predictor))
    numbers = _NUMBERS | {f"p_{c}" for c in names}
    fields = [pa.field(c, pa.float64() if c in numbers else pa.string()) for c in sample]
    t = predictor.spec.threshold if model.threshold is None else model.threshold
    stamp = {"model_id": predictor.model_id, "threshold": t, "gate": model.gate, "precision": model.precision}
    return pa.schema(fields, metadata={_STAMP: json.dumps(stamp, sort_keys=True).encode()})


def _positive(predictor: Predictor) -> str | None:
    return predictor.spec.positive_class if len(predictor.spec.class_names) == 2 else None


def scored_files(parts: Path, schema: pa.Schema) -> Iterator[str]:
    """The ``file`` column of every Parquet part in ``parts`` (rows of an earlier run).

    Raises:
        DefectlensError: when a part holds rows of another model, settings or columns, or cannot be read.
    """
    import pyarrow.parquet as pq

    for part in sorted(parts.glob("part-*.parquet")):
        try:
            pf = pq.ParquetFile(part)
        except Exception as exc:  # pyarrow's own error types: a damaged file
            raise DefectlensError(
                f"{part}: cannot read this Parquet part ({exc}); delete it to score its files again"
            ) from None
        had = pf.schema_arrow
        if had.names != schema.names or (had.metadata or {}).get(_STAMP) != schema.metadata[_STAMP]:
            raise DefectlensError(
                f"{parts} holds rows scored with another model or settings ({(had.metadata or {}).get(_STAMP)!r}, "
                f"now {schema.metadata[_STAMP]!r}); pass --force to score everything again, or another --out"
            )
        yield from pf.read(columns=["file"]).column("file").to_pylist()


class Scorer:
    """One Ray actor: one :class:`Predictor` on one core; a batch of files in, their rows out (Arrow)."""

    def __init__(self, *, model: ArchiveModel, schema: pa.Schema, uri: Uri | None = None):
        self.predictor = model.load()
        self.model, self.schema, self.uri = model, schema, uri

    def __call__(self, batch: pa.Table) -> pa.Table:
        problems: dict[str, str] = {}
        if self.uri is None:  # local files: this actor opens them
            files = batch.column("file").to_pylist()
            truth = dict(zip(files, batch.column("truth").to_pylist(), strict=True))
            problems = {f: p for f, p in zip(files, batch.column("problem").to_pylist(), strict=True) if p}
            read: Callable[[str], Any] = str
        else:  # an object store: Ray read the bytes
            paths = batch.column("path").to_pylist()
            files = [self.uri.name(p) for p in paths]
            classes = frozenset(self.predictor.spec.class_names)
            truth = {self.uri.name(p): self.uri.truth(p, classes) or "" for p in paths}
            read = dict(zip(files, batch.column("bytes").to_pylist(), strict=True)).__getitem__
        return score_rows(self.predictor, self.model, self.schema, files, truth=truth, problems=problems, read=read)


def score_rows(
    predictor: Predictor,
    model: ArchiveModel,
    schema: pa.Schema,
    files: list[str],
    *,
    truth: dict[str, str],
    problems: dict[str, str],
    read: Callable[[str], Any] = str,
) -> pa.Table:
    """The rows of ``files``, decided as ``predict DIR`` decides them (:func:`predictions`, :func:`row_of`)."""
    preds = predictions(predictor, files, problems, read=read, threshold=model.threshold, batch_size=model.batch_size)
    names, positive = list(predictor.spec.class_names), _positive(predictor)
    rows = [row_of(p, names, truth.get(f) or None, positive) for f, p in zip(files, preds, strict=True)]
    return to_table(rows, schema)


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows of :func:`row_of` as an Arrow table of ``schema``: an empty number is a null; text is kept
    as UTF-8 (the bytes of a file name that is not, as ``\\xNN``, as in the CSV)."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {}
    for f in schema:
        if pa.types.is_floating(f.type):
            columns[f.name] = [None if r[f.name] == "" else float(r[f.name]) for r in rows]
        else:
            columns[f.name] = [utf8_text(str(r[f.name])) for r in rows]
    return pa.Table.from_pydict(columns, schema=schema)


def _run(
    ray: ModuleType,
    scored: Dataset,
    first: pa.Table,
    *,
    schema: pa.Schema,
    parts: Path,
    total: int,
    progress: Progress | None,
) -> int:
    """Run the pipeline, writing the rows (``first``: the rows of objects Ray cannot read, decided on the
    driver) as Parquet parts as they come back; the rows written."""
    ray.data.DataContext.get_current().enable_progress_bars = False  # the command's progress line counts rows
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    writer = PartWriter(parts, schema)
    writer.add(first)
    try:
        with (progress or Progress()).phase("scoring", total=total, unit="img") as phase:
            phase.advance(first.num_rows)
            for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                table = cast("pa.Table", batch)  # batch_format="pyarrow": an Arrow table, whatever the stubs say
                writer.add(table)
                phase.advance(table.num_rows)
    except (ray.exceptions.RayError, ray.data.exceptions.SystemException) as exc:
        writer.flush()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DefectlensError(
            f"the Ray run stopped ({first[:300]}); the {writer.rows} rows scored so far are kept in {parts}: "
            "run the same command again to score the rest"
        ) from None
    finally:
        writer.flush()  # complete rows are worth keeping, whatever stopped the run (Ctrl-C included)
    return writer.rows


class PartWriter:
    """Collects rows and writes them as Parquet parts of :data:`PART_ROWS` rows, each written whole or not
    at all (a temporary file, renamed), named by run so that a resumed run never overwrites a part."""

    def __init__(self, parts: Path, schema: pa.Schema, *, part_rows: int = PART_ROWS):
        self.parts, self.schema, self.part_rows = parts, schema, part_rows
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.rows = 0  # rows written
        self._pending: list[pa.Table] = []
        self._count = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.append(table)
        if sum(t.num_rows for t in self._pending) >= self.part_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        table = pa.concat_tables(self._pending).cast(self.schema)  # the stamp rides in every part
        self._pending = []
        path = self.parts / f"part-{self.run}-{self._count:05d}.parquet"
        with atomic_output(path) as fh:
            pq.write_table(table, fh)
        self._count += 1
        self.rows += table.num_rows


def _finish(result: ArchiveResult, listing: Listing, predictor: Predictor) -> None:
    """Check rows = files over every part, write ``predictions.csv`` in input order, and count the rows
    (in Arrow, a few thousand rows at a time in Python: an archive can hold millions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert result.parquet_path is not None and result.csv_path is not None
    table = pq.read_table(result.parquet_path)
    files = table.column("file").to_pylist()
    repeated = [f for f, n in Counter(files).items() if n > 1]
    missing = set(listing.files).difference(files)
    if repeated or missing:
        raise DefectlensError(
            f"{result.parquet_path}: {len(repeated)} files have more than one row and {len(missing)} none "
            f"(e.g. {(repeated or sorted(missing))[0]}); score again with --force"
        )
    order = {f: i for i, f in enumerate(listing.files)}
    keys = [(order.get(f, len(order)), f) for f in files]  # files of earlier runs no longer listed: last
    table = table.take(pa.array(sorted(range(len(keys)), key=keys.__getitem__), pa.int64()))
    with _CsvSink(result.csv_path) as sink:
        for batch in table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                sink.write(_csv_row(row))
    _tally(result, table, predictor)


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: "" if v is None else v for k, v in row.items()}


def _tally(result: ArchiveResult, table: pa.Table, predictor: Predictor) -> None:
    """The summary ``predict DIR`` prints, over every row: counts by class and status, errors, review, warnings."""
    import pyarrow.compute as pc

    def counts(column: pa.ChunkedArray) -> dict[str, int]:
        return {c["values"]: c["counts"] for c in pc.value_counts(column).to_pylist()}

    def rows(mask: pa.ChunkedArray) -> list[dict[str, Any]]:
        return [_csv_row(r) for r in table.filter(mask).to_pylist()]

    status = table.column("status")
    result.files = table.num_rows
    result.statuses = counts(status)
    result.counts = counts(table.filter(pc.equal(status, "ok")).column("prediction"))
    result.errors = rows(pc.equal(status, "error"))
    result.review = rows(pc.equal(table.column("needs_review"), "true"))
    result.warnings = rows(pc.not_equal(table.column("warning"), ""))
    result.mismatches = int(pc.sum(pc.equal(table.column("match"), "MISMATCH")).as_py() or 0)
    result.gate = predictor.gate.describe()
    result.class_names = tuple(predictor.spec.class_names)
