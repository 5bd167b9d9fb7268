"""The ``.dlens`` bundle format: one zip holding the ONNX graph, the weights and ``spec.json``.

A bundle is what ships to the line: ``model.onnx`` (ONNX Runtime), ``model.safetensors`` (the same
weights, for Grad-CAM and fine-tuning), optionally ``model.int8.onnx``, and ``spec.json`` (the
:class:`ModelSpec`, provenance, metrics, parity report, versions and the ``model_id``). Nothing in
it is pickled, so opening a bundle from an untrusted path cannot run code.

The ``model_id`` is the sha256 of every member's bytes plus ``spec.json`` without the id itself;
loading recomputes it, so a member changed after export (by accident or on purpose) is refused.
This is an integrity check, not a signature: whoever can rewrite the file can rewrite the hash, so
reading also refuses what a crafted bundle could use to hurt the reader, before reading a byte of
it: members larger than :data:`MAX_MEMBER_BYTES` (declared size in the zip directory), compressed
more than :data:`MAX_RATIO` times (a zip bomb), encrypted or stored with an unknown method; and
``spec.json`` is checked against the :class:`ModelSpec` schema before anything is built from it. Its
optional ``cam`` entry (the class activation map's graph output and the head's tensors in
``model.safetensors``, read here with NumPy) must name float tensors of the right shapes.

A bundle travels to other machines and people, so :func:`write_bundle` replaces every absolute path
in ``spec.json`` (training config, notes) by its last component: no machine's folder layout ships.

This module imports neither torch nor onnxruntime, so a serving process can inspect a bundle cheaply.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from defectlens.core.archive import EMPTY, zip_problem
from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GateProfile, profile_problems
from defectlens.core.spec import ModelSpec, SpecError

FORMAT = "defectlens-bundle/1"
SPEC_FILE = "spec.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WEIGHTS_FILE = "model.safetensors"
REQUIRED = (SPEC_FILE, ONNX_FILE, WEIGHTS_FILE)
ALLOWED = (*REQUIRED, INT8_FILE)
SUFFIX = ".dlens"
# The ONNX metadata_props keys carrying the spec, so other runtimes can read the model on its own.
META_SPEC_KEY = "defectlens.spec"
META_FORMAT_KEY = "defectlens.format"
#: The graph output holding the last feature map (N, K, h, w) of the untransformed image, for class
#: activation maps; ``spec.json``'s ``cam`` entry names the head's tensors in ``model.safetensors``.
CAM_OUTPUT = "cam_features"
#: Largest uncompressed member, as declared in the zip directory (ONNX Runtime's protobuf limit is 2 GiB;
#: the largest model in the zoo is well under 100 MiB).
MAX_MEMBER_BYTES = 1 << 30
#: Largest ``spec.json`` (it holds the spec, metrics and provenance: kilobytes).
MAX_SPEC_BYTES = 16 << 20
#: Largest compression ratio of a member over 1 MiB: weights compress about 1.1 times, a bomb 1000 times.
MAX_RATIO = 100
_RATIO_FLOOR = 1 << 20
_ABSOLUTE = re.compile(r"""(?<![\w.~:/-])(?:/|[A-Za-z]:[\\/]|\\\\)[^\s'"]*""")


@dataclass(frozen=True)
class Bundle:
    """A validated bundle in memory.

    Attributes:
        spec: the model's input contract and decision settings.
        meta: the whole ``spec.json`` (provenance, metrics, parity, versions, created, model_id).
        members: raw bytes of every member except ``spec.json``.
    """

    spec: ModelSpec
    meta: dict[str, Any]
    members: dict[str, bytes]

    @property
    def model_id(self) -> str:
        return str(self.meta["model_id"])

    @property
    def profile(self) -> GateProfile | None:
        """The gate's reference profile (None for a bundle exported without one; checked at read)."""
        gate = self.meta.get("gate")
        return None if gate is None else GateProfile.from_dict(gate)

    @property
    def onnx(self) -> bytes:
        """The graph ONNX Runtime should run: INT8 when it was accepted at export, else FP32."""
        return self.members[self.meta.get("default_onnx", ONNX_FILE)]


def content_hash(members: dict[str, bytes], meta: dict[str, Any]) -> str:
    """sha256 over the members (in name order) and the canonical ``spec.json`` without ``model_id``."""
    h = hashlib.sha256()
    for name in sorted(members):
        h.update(name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    body = {k: v for k, v in meta.items() if k != "model_id"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def write_bundle(path: str | Path, *, members: dict[str, bytes], meta: dict[str, Any]) -> str:
    """Write a bundle atomically and return its ``model_id``.

    Args:
        path: output file (``.dlens`` by convention).
        members: ``model.onnx``, ``model.safetensors`` and optionally ``model.int8.onnx``.
        meta: ``spec.json`` content; ``format``, ``files`` and ``model_id`` are filled in here.
    """
    unknown = set(members) - set(ALLOWED)
    missing = {ONNX_FILE, WEIGHTS_FILE} - set(members)
    if unknown or missing:
        raise ValueError(f"bundle members: unknown {sorted(unknown)}, missing {sorted(missing)}")
    meta = {**shipped_meta(meta), "format": FORMAT}
    try:  # never write a bundle that no load would accept (a later load names the same problem)
        ModelSpec.from_dict(meta.get("spec"))
    except SpecError as exc:
        raise DefectlensError(f"{path}: refused to export: {exc}") from None
    meta["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in sorted(members.items())}
    meta["model_id"] = content_hash(members, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(SPEC_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
            for name, data in sorted(members.items()):
                zf.writestr(name, data)
        fh.flush()
        os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
    tmp.replace(path)  # never leave half a bundle behind
    return str(meta["model_id"])


def shipped_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``spec.json`` as it leaves this machine: absolute paths in the provenance fields (training config,
    data source, notes) cut to their last component; the ``spec`` itself kept verbatim, since class names
    are data, not paths (``scratch (/dent)`` stays, and two names never become one)."""
    kept = {k: v for k, v in meta.items() if k != "spec"}
    return {**without_paths(kept), **({"spec": meta["spec"]} if "spec" in meta else {})}


def without_paths(value: Any) -> Any:
    """``value`` with every absolute path in its strings cut to the path's last component.

    ``/home/ana/data/casting`` becomes ``casting``, also inside a sentence; relative paths, names and
    numbers are kept. Used on ``spec.json`` so a shipped bundle does not reveal the training machine.
    """
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(v) for v in value]
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: _last_part(m.group(0)), value)
    return value


def _last_part(path: str) -> str:
    cut = path.rstrip("/\\.,;:)")
    tail = path[len(cut) :]
    name = PureWindowsPath(cut).name if "\\" in cut or re.match(r"^[A-Za-z]:", cut) else Path(cut).name
    return (name or "/") + tail


def is_bundle(path: str | Path) -> bool:
    """True when ``path`` is a file meant as a bundle: named ``.dlens``, or a zip holding ``spec.json``.

    A ``.dlens`` file counts even when empty or broken, so that :func:`read_bundle` says what is wrong
    with it instead of a loader trying it as something else.
    """
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix.lower() == SUFFIX:
        return True
    try:
        if not zipfile.is_zipfile(p):
            return False
        with zipfile.ZipFile(p) as zf:
            return SPEC_FILE in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_bundle(path: str | Path) -> Bundle:
    """Open and validate a bundle: sizes, members, format version, content hash and spec schema.

    Raises:
        DefectlensError: naming the file and what is wrong (missing, empty, not a zip, truncated,
            oversized or over-compressed members, unexpected or missing members, unknown format,
            contents that do not match the recorded hash, a spec outside the schema, or JSON nested too
            deeply to read).
    """
    try:
        return _read_bundle(Path(path))
    except RecursionError:  # json and the checks below recurse; a crafted spec.json can nest 100,000 levels
        raise DefectlensError(
            f"{path}: refused: spec.json is nested too deeply to be a bundle's spec (crafted or damaged); "
            "export the bundle again"
        ) from None


def _read_bundle(p: Path) -> Bundle:
    if not p.is_file():
        raise DefectlensError(f"{p}: model bundle not found" + ("" if not p.exists() else " (not a file)"))
    problem = zip_problem(p)
    if problem == EMPTY:
        raise DefectlensError(f"{p}: {EMPTY}, not a bundle; re-export it with 'defectlens export'")
    if problem:
        raise DefectlensError(f"{p}: not a defectlens bundle: {problem}; create one with 'defectlens export'")
    try:
        with zipfile.ZipFile(p) as zf:
            names = _check_directory(p, zf)
            meta = json.loads(zf.read(SPEC_FILE))
            members = {n: zf.read(n) for n in names if n != SPEC_FILE}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise DefectlensError(f"{p}: refused: truncated or corrupt bundle ({exc})") from None
    return Bundle(spec=_check_meta(p, meta, members), meta=meta, members=members)


def _check_directory(p: Path, zf: zipfile.ZipFile) -> list[str]:
    """Member names, after refusing anything unsafe that the zip directory declares (nothing read yet)."""
    infos = zf.infolist()
    names = [i.filename for i in infos]
    unexpected = sorted(set(names) - set(ALLOWED))
    missing = sorted(set(REQUIRED) - set(names))
    if unexpected or missing or len(names) != len(set(names)):
        raise DefectlensError(
            f"{p}: refused: bundle members are wrong (unexpected {unexpected}, missing {missing}"
            f"{', duplicated names' if len(names) != len(set(names)) else ''}); re-export it with 'defectlens export'"
        )
    for info in infos:
        limit = MAX_SPEC_BYTES if info.filename == SPEC_FILE else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise DefectlensError(
                f"{p}: refused: member {info.filename} declares {info.file_size:,} bytes (limit {limit:,})"
            )
        if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise DefectlensError(
                f"{p}: refused: member {info.filename} expands {info.file_size / max(1, info.compress_size):,.0f} "
                f"times (limit {MAX_RATIO}; a zip bomb?)"
            )
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DefectlensError(f"{p}: refused: member {info.filename} is encrypted or uses an unknown compression")
    return names


def _check_meta(p: Path, meta: Any, members: dict[str, bytes]) -> ModelSpec:
    """The bundle's spec, after checking format, recorded hashes, model id and the spec schema."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DefectlensError(f"{p}: unsupported bundle format {found!r:.60} (this defectlens reads {FORMAT})")
    recorded = meta.get("files")
    if not isinstance(recorded, dict):
        raise DefectlensError(f"{p}: refused: spec.json has no 'files' table of member hashes")
    for name, data in members.items():
        if recorded.get(name) != hashlib.sha256(data).hexdigest():
            raise DefectlensError(f"{p}: refused: {name} does not match its recorded sha256 (bundle was modified)")
    if content_hash(members, meta) != meta.get("model_id"):
        raise DefectlensError(f"{p}: refused: spec.json does not match the bundle's model_id (bundle was modified)")
    problem = safetensors_problem(members[WEIGHTS_FILE])
    if problem:
        raise DefectlensError(f"{p}: refused: {WEIGHTS_FILE} is not a safetensors file ({problem})")
    default = meta.get("default_onnx", ONNX_FILE)
    if default not in (ONNX_FILE, INT8_FILE) or default not in members:
        raise DefectlensError(f"{p}: refused: default_onnx {default!r:.60} names no ONNX member of the bundle")
    if meta.get("cam") is not None:
        problem = cam_problem(meta["cam"], members[WEIGHTS_FILE])
        if problem:
            raise DefectlensError(f"{p}: refused: spec.json's cam entry is invalid: {problem}")
    if meta.get("gate") is not None:
        problems = profile_problems(meta["gate"])
        if problems:
            raise DefectlensError(f"{p}: refused: spec.json's gate profile is invalid: {'; '.join(problems[:6])}")
    try:
        return ModelSpec.from_dict(meta.get("spec"))
    except SpecError as exc:
        raise DefectlensError(f"{p}: refused: spec.json: {exc}") from None


def safetensors_problem(data: bytes) -> str | None:
    """Why ``data`` is not a well-formed safetensors file (header size, JSON header, tensor offsets), or None.

    Checked without torch or the safetensors package, so a bundle with broken weights is refused at
    load rather than when Grad-CAM first needs them.
    """
    if len(data) < 8:
        return "shorter than its 8-byte header size"
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8 or size > MAX_SPEC_BYTES:
        return f"header of {size} bytes does not fit the file"
    try:
        header = json.loads(data[8 : 8 + size])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "header is not JSON (or nested too deeply)"
    if not isinstance(header, dict):
        return "header is not an object"
    body = len(data) - 8 - size
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            return f"tensor {name!r:.60} has bad data offsets"
    return None


#: The dtypes :func:`safetensors_array` reads (what a float state dict holds).
_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}


def _safetensors_header(data: bytes) -> tuple[dict[str, Any], int]:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), 8 + size


def safetensors_array(data: bytes, name: str) -> np.ndarray:
    """Tensor ``name`` of a safetensors file as a float32 NumPy array, read without torch or safetensors.

    ``data`` must have passed :func:`safetensors_problem` (offsets inside the file).

    Raises:
        DefectlensError: when the tensor is absent, of a dtype other than F32/F64/F16, or its shape does
            not fit its bytes.
    """
    header, start = _safetensors_header(data)
    entry = header.get(name) if name != "__metadata__" else None
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
        raise DefectlensError(f"{WEIGHTS_FILE} has no float tensor {name!r:.80}")
    shape = entry.get("shape")
    begin, end = entry["data_offsets"]
    dtype = np.dtype(_DTYPES[entry["dtype"]])
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DefectlensError(f"{WEIGHTS_FILE}: tensor {name!r:.80} has a bad shape")
    if int(np.prod(shape)) * dtype.itemsize != end - begin:
        raise DefectlensError(f"{WEIGHTS_FILE}: tensor {name!r:.80} of shape {shape} does not fit its bytes")
    flat = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=start + begin)
    return flat.reshape(shape).astype(np.float32)


def cam_problem(entry: Any, weights: bytes) -> str | None:
    """Why ``spec.json``'s ``cam`` entry cannot drive a class activation map, or None.

    It names the graph output and the head's weight (C, K) and bias (C,) in ``model.safetensors``.
    """
    if not isinstance(entry, dict):
        return "not an object"
    if entry.get("output") != CAM_OUTPUT:
        return f"output must be {CAM_OUTPUT!r}, got {entry.get('output')!r:.60}"
    names = (entry.get("weight"), entry.get("bias"))
    if not all(isinstance(n, str) for n in names):
        return "weight and bias must name tensors of model.safetensors"
    try:
        weight, bias = (safetensors_array(weights, str(n)) for n in names)
    except DefectlensError as exc:
        return str(exc)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        return f"the head's weight {list(weight.shape)} and bias {list(bias.shape)} are not (C, K) and (C,)"
    return _map_kind_problem(entry)


#: ``cam.kind`` of an anomaly model: the graph output is the anomaly map itself (N, 1, S, S), drawn with
#: the fixed ``range`` [low, high] of raw values (an overlay of a good part stays cold).
ANOMALY_MAP = "anomaly_map"


def _map_kind_problem(entry: dict[str, Any]) -> str | None:
    kind = entry.get("kind", "cam")
    if kind == "cam":
        return None
    if kind != ANOMALY_MAP:
        return f"kind must be 'cam' or {ANOMALY_MAP!r}, got {kind!r:.40}"
    span = entry.get("range")
    numbers = (
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in span)
    )
    if not numbers or not span[0] < span[1]:  # type: ignore[index]
        return f"an anomaly map's range must be two finite numbers, low < high, got {span!r:.60}"
    return None
