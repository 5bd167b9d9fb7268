"""The bad-input corpus of issue #18, generated at run time (no binary fixture is committed).

Each builder writes one hostile or unlucky input into a folder and returns what to run on it; the
tests in this package run every case through the command line (or the library where the case is a
library call) and assert a row or a clean refusal with the documented exit code. The module only
needs numpy and Pillow, so ``before.py``-style scripts can replay it against another checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# -- images -------------------------------------------------------------------------------------


def noise(size: tuple[int, int] = (40, 32), seed: int = 0, mode: str = "L") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg(size: tuple[int, int] = (160, 120), seed: int = 0) -> bytes:
    """A smooth RGB JPEG with the standard tables (what cameras write)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, size[0])[None, :, None] + rng.normal(0, 12, (size[1], size[0], 3))
    return encode(Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def corrupt_jpeg(kind: str, seed: int = 0) -> bytes:
    """A JPEG with 2 KB overwritten mid-file: ``zeros`` (a zeroed block) or ``random`` bytes."""
    data = bytearray(jpeg((480, 360), seed))
    at = len(data) // 2
    rng = np.random.default_rng(seed)
    data[at : at + 2048] = bytes(2048) if kind == "zeros" else rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    return bytes(data)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"


def image_files() -> dict[str, bytes]:
    """Single files: name -> bytes (the name's suffix is what a user would see)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [noise(seed=i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    good = jpeg()
    return {
        "lab.tif": encode(Image.new("LAB", (32, 32), (50, 0, 0)), "TIFF"),
        "eps_renamed.jpg": EPS,
        "bomb_header.png": encode(Image.new("1", (20000, 20000)), "PNG"),
        "zeroed_block.jpg": corrupt_jpeg("zeros"),
        "random_block.jpg": corrupt_jpeg("random"),
        "truncated.jpg": good[: len(good) // 2],
        "no_end_marker.jpg": good[:-2],
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "animated.gif": gif.getvalue(),
        "rotated.jpg": encode(noise((40, 20)), "JPEG", exif=exif.tobytes()),
        "bad_exif.jpg": encode(noise(), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"),
        "cmyk.jpg": encode(noise(mode="RGB").convert("CMYK"), "JPEG"),
        "sixteen_bit.png": encode(Image.fromarray(np.full((20, 30), 40000, np.uint16)), "PNG"),
        "float.tif": encode(Image.fromarray(np.full((20, 30), 0.5, np.float32)), "TIFF"),
        "ycbcr.tif": encode(noise(mode="RGB").convert("YCbCr"), "TIFF"),
    }


def png16_64mpx() -> bytes:
    """The issue's 124 KB 16-bit PNG of 64 Mpx (8000 x 8000)."""
    return encode(Image.fromarray(np.zeros((8000, 8000), np.uint16)), "PNG")


def huge_jpeg() -> bytes:
    """A 9000 x 8000 (72 Mpx) JPEG: over the pixel limit, decodable at half scale."""
    small = Image.fromarray(np.linspace(0, 255, 90 * 80, dtype=np.uint8).reshape(80, 90))
    return encode(small.resize((9000, 8000)), "JPEG", quality=50)


# -- folders ------------------------------------------------------------------------------------


def good_images(folder: Path, n: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"good_{i}.png"
        noise(seed=100 + i).save(p)
        paths.append(p)
    return paths


def add_walk_problem(folder: Path, kind: str) -> Path:
    """Put one thing a folder walk must report into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "symlink_loop":
        (folder / "sub").mkdir(exist_ok=True)
        path = folder / "sub" / "loop"
        path.symlink_to("..", target_is_directory=True)
    elif kind == "self_symlink":
        path = folder / "self.png"
        path.symlink_to(path.name)
    elif kind == "dangling_symlink":
        path = folder / "gone.png"
        path.symlink_to(folder / "never-there.png")
    elif kind == "fifo":
        path = folder / "camera_pipe.png"
        os.mkfifo(path)
    elif kind == "dir_named_jpg":
        path = folder / "x.jpg"
        path.mkdir()
    elif kind == "unreadable_subfolder":
        path = folder / "locked"
        path.mkdir()
        noise(seed=7).save(path / "inside.png")
        path.chmod(0)  # root reads it anyway: the tests also simulate the refusal (see test_walk.py)
    else:
        raise ValueError(kind)
    return path


WALK_PROBLEMS = ("symlink_loop", "self_symlink", "dangling_symlink", "fifo", "dir_named_jpg", "unreadable_subfolder")
WALK_REASONS = {
    "symlink_loop": "symlink loop",
    "self_symlink": "symlink loop",
    "dangling_symlink": "dangling symlink",
    "fifo": "FIFO",
    "dir_named_jpg": "folder named like an image",
    "unreadable_subfolder": "permission denied",
}

# -- bundles ------------------------------------------------------------------------------------


def bundle_parts(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("spec.json"))
        members = {n: zf.read(n) for n in zf.namelist() if n != "spec.json"}
    return meta, members


def write_crafted(
    path: Path, meta: Any, members: dict[str, bytes], *, rehash: bool = True, compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    """A bundle with ``meta`` and ``members`` whose hashes and model id are recomputed (as an attacker would)."""
    if rehash and isinstance(meta, dict):
        meta = dict(meta)
        meta["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in sorted(members.items())}
        h = hashlib.sha256()
        for name in sorted(members):
            h.update(name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
        body = {k: v for k, v in meta.items() if k != "model_id"}
        h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        meta["model_id"] = h.hexdigest()
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("spec.json", json.dumps(meta))
        for name, data in sorted(members.items()):
            zf.writestr(name, data)
    return path


def _spec_edit(**changes: Any) -> Callable[[dict[str, Any], dict[str, bytes]], None]:
    def edit(meta: dict[str, Any], members: dict[str, bytes]) -> None:
        for key, value in changes.items():
            if value is _DELETE:
                meta["spec"].pop(key, None)
            else:
                meta["spec"][key] = value

    return edit


_DELETE = object()


def _declare_size(data: bytes, name: str, size: int) -> bytes:
    """Patch the zip's central directory so ``name`` declares ``size`` uncompressed bytes."""
    buf = bytearray(data)
    at = 0
    while (at := buf.find(b"PK\x01\x02", at)) >= 0:
        name_len = struct.unpack_from("<H", buf, at + 28)[0]
        if bytes(buf[at + 46 : at + 46 + name_len]) == name.encode():
            struct.pack_into("<I", buf, at + 24, size)
            return bytes(buf)
        at += 4
    raise ValueError(name)


@dataclass(frozen=True)
class BundleCase:
    """A crafted bundle: how it is made and the words its refusal must contain."""

    make: Callable[[Path, Path], Path]
    expect: str
    backend: str = "auto"


def _edited(edit: Callable[[dict[str, Any], dict[str, bytes]], None], *, rehash: bool = True):
    def make(base: Path, out: Path) -> Path:
        meta, members = bundle_parts(base)
        edit(meta, members)
        return write_crafted(out, meta, members, rehash=rehash)

    return make


def _raw(content: Callable[[Path], bytes]):
    def make(base: Path, out: Path) -> Path:
        out.write_bytes(content(base))
        return out

    return make


def _set(key: str, value: Any):
    def edit(meta: dict[str, Any], members: dict[str, bytes]) -> None:
        meta[key] = value

    return edit


def _member(name: str, data: bytes):
    def edit(meta: dict[str, Any], members: dict[str, bytes]) -> None:
        members[name] = data

    return edit


def _rgb_spec(meta: dict[str, Any], members: dict[str, bytes]) -> None:
    meta["spec"].update(in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)  # valid schema, 1-channel graph


def _bomb_declared(base: Path, out: Path) -> Path:
    meta, members = bundle_parts(base)
    members["model.int8.onnx"] = b"\0" * 1024
    write_crafted(out, meta, members)
    out.write_bytes(_declare_size(out.read_bytes(), "model.int8.onnx", 2**31 - 1))
    return out


def _bomb_ratio(base: Path, out: Path) -> Path:
    meta, members = bundle_parts(base)
    members["model.int8.onnx"] = bytes(64 << 20)  # 64 MiB of zeros deflate to ~64 KB
    return write_crafted(out, meta, members)


def _list_meta(base: Path, out: Path) -> Path:
    _, members = bundle_parts(base)
    return write_crafted(out, [1, 2, 3], members)


BUNDLES: dict[str, BundleCase] = {
    "zero_byte": BundleCase(_raw(lambda b: b""), "empty file"),
    "truncated": BundleCase(_raw(lambda b: b.read_bytes()[: b.stat().st_size // 2]), "truncated"),
    "png_renamed": BundleCase(_raw(lambda b: encode(noise(), "PNG")), "not a zip"),
    "spec_missing_arch": BundleCase(_edited(_spec_edit(arch=_DELETE)), "missing field"),
    "class_names_int": BundleCase(_edited(_spec_edit(class_names=5)), "class_names"),
    "input_size_text": BundleCase(_edited(_spec_edit(input_size="abc")), "input_size"),
    "input_size_100000": BundleCase(_edited(_spec_edit(input_size=100000)), "input_size"),
    "temperature_zero": BundleCase(_edited(_spec_edit(temperature=0)), "temperature"),
    "temperature_nan": BundleCase(_edited(_spec_edit(temperature=float("nan"))), "temperature"),
    "in_channels_2": BundleCase(_edited(_spec_edit(in_channels=2)), "in_channels"),
    "mean_length": BundleCase(_edited(_spec_edit(mean=[0.5, 0.5])), "mean has 2 values"),
    "std_zero": BundleCase(_edited(_spec_edit(std=[0.0])), "std"),
    "positive_unknown": BundleCase(_edited(_spec_edit(positive_class="scratch")), "positive_class"),
    "threshold_5": BundleCase(_edited(_spec_edit(threshold=5)), "threshold"),
    "tta_unknown": BundleCase(_edited(_spec_edit(tta="spin")), "tta"),
    "interpolation_unknown": BundleCase(_edited(_spec_edit(interpolation="magic")), "interpolation"),
    "class_names_repeat": BundleCase(_edited(_spec_edit(class_names=["ok", "ok"], positive_class="ok")), "repeat"),
    "class_name_nul": BundleCase(_edited(_spec_edit(class_names=["ok", "def\x00"], positive_class=None)), "control"),
    "spec_not_object": BundleCase(_edited(_set("spec", [1])), "expected an object"),
    "meta_is_list": BundleCase(_list_meta, "unsupported bundle format"),
    "files_not_table": BundleCase(_edited(_set("files", "x"), rehash=False), "files"),
    "default_onnx_bogus": BundleCase(_edited(_set("default_onnx", "spec.json")), "default_onnx"),
    "format_unknown": BundleCase(_edited(_set("format", "defectlens-bundle/99")), "unsupported bundle format"),
    "onnx_garbage": BundleCase(_edited(_member("model.onnx", b"garbage")), "ONNX Runtime cannot load"),
    "safetensors_garbage": BundleCase(_edited(_member("model.safetensors", b"garbage")), "safetensors", "torch"),
    "graph_channels_mismatch": BundleCase(_edited(_rgb_spec), "does not match its spec"),
    "graph_classes_mismatch": BundleCase(
        _edited(_spec_edit(class_names=["ok", "defect", "dent"])), "does not match its spec"
    ),
    "bomb_declared_2gib": BundleCase(_bomb_declared, "declares"),
    "bomb_ratio": BundleCase(_bomb_ratio, "expands"),
    "edited_not_rehashed": BundleCase(_edited(_spec_edit(threshold=0.1), rehash=False), "was modified"),
    "extra_member": BundleCase(_edited(_member("evil.pkl", b"\x80\x04K\x01.")), "unexpected"),
}

# -- imports ------------------------------------------------------------------------------------


def csv_source(folder: Path, text: str, *, encoding: str = "utf-8", images: tuple[str, ...] = ("a.png", "b.png")):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(images):
        noise(seed=200 + i).save(folder / name)
    path = folder / "labels.csv"
    path.write_bytes(text.encode(encoding))
    return path


@dataclass(frozen=True)
class ImportCase:
    """A ``data import`` source, the flags it runs with, and what dataset.json must then say."""

    make: Callable[[Path], Path]
    flags: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # path -> words of its reason
    warning: str = ""
    records: int | None = None


def _csv(text: str, **kw: Any) -> Callable[[Path], Path]:
    return lambda folder: csv_source(folder, text, **kw)


def _neu_inf(folder: Path) -> Path:
    (folder / "IMAGES").mkdir(parents=True)
    (folder / "ANNOTATIONS").mkdir()
    for i, cls in enumerate(("scratches", "patches")):
        noise(seed=300 + i).save(folder / "IMAGES" / f"{cls}_1.jpg", "JPEG")
        xmin = "inf" if i == 0 else "1"
        (folder / "ANNOTATIONS" / f"{cls}_1.xml").write_text(
            f"<annotation><filename>{cls}_1.jpg</filename><object><name>{cls}</name><bndbox><xmin>{xmin}</xmin>"
            "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
        )
    return folder


def _folder_with(kind: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        good_images(folder / "ok")
        good_images(folder / "defect")
        add_walk_problem(folder / "defect", kind)
        return folder

    return make


def _control_class(folder: Path) -> Path:
    good_images(folder / "ok")
    good_images(folder / "def\x01ect")
    return folder


IMPORTS: dict[str, ImportCase] = {
    "csv_latin1": ImportCase(
        _csv("path,label\na.png,défaut\nb.png,ok\n", encoding="latin-1"), warning="not UTF-8", records=2
    ),
    "csv_extra_fields": ImportCase(
        _csv("path,label\na.png,ok,surplus\nb.png,defect\n"), skipped={"labels.csv:2": "more fields"}, records=1
    ),
    "csv_absolute_outside": ImportCase(
        _csv("path,label\n/etc/passwd,ok\na.png,ok\nb.png,defect\n"),
        skipped={"/etc/passwd": "--allow-outside-root"},
        records=2,
    ),
    "csv_dotdot_outside": ImportCase(
        _csv("path,label\n../../../etc/hostname,ok\na.png,ok\nb.png,defect\n"),
        skipped={"../../../etc/hostname": "--allow-outside-root"},
        records=2,
    ),
    "csv_conflicting_labels": ImportCase(
        _csv(
            "path,label\na.png,ok\na.png,defect\n./a.png,scratch\nb.png,ok\nc.png,defect\n",
            images=("a.png", "b.png", "c.png"),
        ),
        skipped={"a.png": "conflict: listed 3 times"},
        warning="conflicting labels",
        records=2,
    ),
    "csv_repeated_same_label": ImportCase(
        _csv("path,label\na.png,ok\na.png,ok\nb.png,defect\n"), skipped={"a.png": "listed again"}, records=2
    ),
    "csv_nul_in_label": ImportCase(
        _csv("path,label\na.png,def\x00\nb.png,ok\nc.png,defect\n", images=("a.png", "b.png", "c.png")),
        skipped={"a.png": "control characters"},
        records=2,
    ),
    "folder_control_char_class": ImportCase(_control_class, skipped={"def\x01ect/good_0.png": "control"}, records=2),
    "neu_xml_inf": ImportCase(_neu_inf, warning="bad xml", records=2),
    **{f"folder_{k}": ImportCase(_folder_with(k), records=4) for k in WALK_PROBLEMS},
}

# -- running the command line ---------------------------------------------------------------------


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str
    crash: str = ""  # an exception that escaped main() (a bug: the CLI must never let one out)


def run_cli(argv: list[str]) -> Outcome:
    """``defectlens ARGV`` in this process: exit code, stdout, stderr (never raises)."""
    from defectlens.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | None = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:
            return Outcome(None, out.getvalue(), err.getvalue(), f"{type(exc).__name__}: {exc}")
    return Outcome(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def cwd(path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)
