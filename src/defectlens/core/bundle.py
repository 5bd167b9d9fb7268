"""The ``.dlens`` bundle format: one zip holding the ONNX graph, the weights and ``spec.json``.

A bundle is what ships to the line: ``model.onnx`` (ONNX Runtime), ``model.safetensors`` (the same
weights, for Grad-CAM and fine-tuning), optionally ``model.int8.onnx``, and ``spec.json`` (the
:class:`ModelSpec`, provenance, metrics, parity report, versions and the ``model_id``). Nothing in
it is pickled, so opening a bundle from an untrusted path cannot run code.

The ``model_id`` is the sha256 of every member's bytes plus ``spec.json`` without the id itself;
loading recomputes it, so a member changed after export (by accident or on purpose) is refused.
This is an integrity check, not a signature: whoever can rewrite the file can rewrite the hash.

This module imports neither torch nor onnxruntime, so a serving process can inspect a bundle cheaply.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

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
    meta = {**meta, "format": FORMAT, "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(members.items())}}
    meta["model_id"] = content_hash(members, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(SPEC_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for name, data in sorted(members.items()):
            zf.writestr(name, data)
    tmp.replace(path)  # never leave half a bundle behind
    return str(meta["model_id"])


def is_bundle(path: str | Path) -> bool:
    """True when ``path`` is a file that looks like a bundle (zip with ``spec.json``)."""
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as zf:
        return SPEC_FILE in zf.namelist()


def read_bundle(path: str | Path) -> Bundle:
    """Open and validate a bundle: members, format version and content hash.

    Raises:
        DefectlensError: naming the file and what is wrong (missing, not a zip, unexpected or
            missing members, unknown format, or contents that do not match the recorded hash).
    """
    p = Path(path)
    if not p.is_file():
        raise DefectlensError(f"{p}: model bundle not found")
    if not zipfile.is_zipfile(p):
        raise DefectlensError(f"{p}: not a defectlens bundle (not a zip file); create one with 'defectlens export'")
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            unexpected = sorted(set(names) - set(ALLOWED))
            missing = sorted(set(REQUIRED) - set(names))
            if unexpected or missing or len(names) != len(set(names)):
                raise DefectlensError(
                    f"{p}: refused: bundle members are wrong (unexpected {unexpected}, missing {missing}); "
                    "re-export it with 'defectlens export'"
                )
            meta = json.loads(zf.read(SPEC_FILE))
            members = {n: zf.read(n) for n in names if n != SPEC_FILE}
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DefectlensError(f"{p}: refused: corrupt bundle ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DefectlensError(f"{p}: unsupported bundle format {found!r} (this defectlens reads {FORMAT})")
    recorded = meta.get("files", {})
    for name, data in members.items():
        if recorded.get(name) != hashlib.sha256(data).hexdigest():
            raise DefectlensError(f"{p}: refused: {name} does not match its recorded sha256 (bundle was modified)")
    if content_hash(members, meta) != meta.get("model_id"):
        raise DefectlensError(f"{p}: refused: spec.json does not match the bundle's model_id (bundle was modified)")
    try:
        spec = ModelSpec.from_dict(meta["spec"])
    except (KeyError, TypeError) as exc:
        raise DefectlensError(f"{p}: refused: spec.json has no valid model spec ({exc})") from None
    return Bundle(spec=spec, meta=meta, members=members)
