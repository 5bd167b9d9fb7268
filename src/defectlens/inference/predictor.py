"""Predictor: the one inference path used by evaluation, the CLI, the web service and the GUI.

A Predictor owns a model (ONNX Runtime session or torch module) and its :class:`ModelSpec`; it
preprocesses with :mod:`defectlens.data.images`, applies the calibration temperature and the
decision threshold recorded in the spec, and returns a :class:`Prediction`. It is safe to share
one Predictor between threads (a web service's workers): inference holds no mutable state, the
class activation map (:meth:`Predictor.explain`, from the graph's feature output: no torch) is one
more call of the same graph, and Grad-CAM runs on a private copy of the network under a lock.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens.core.bundle import INT8_FILE, ONNX_FILE, WEIGHTS_FILE, is_bundle, read_bundle
from defectlens.core.decision import check_threshold, decide, defect_probability, softmax
from defectlens.core.errors import DefectlensError, ImageError
from defectlens.core.profile import GateMode, check_gate_mode
from defectlens.core.spec import ModelSpec
from defectlens.data.images import Source, prepare_frame, source_label
from defectlens.inference import backends, cam, runtime_choice
from defectlens.inference.cam import CamModel, ClassActivation
from defectlens.inference.gate import Gate, GateCheck

if TYPE_CHECKING:
    from defectlens.models import Classifier

#: Model runtimes a Predictor can use; ``auto`` takes the faster exact runtime for a bundle's graph on this
#: CPU (:mod:`defectlens.inference.runtime_choice`), torch for checkpoints.
BACKENDS = ("auto", "onnx", "openvino", "torch")
#: Which graph of a bundle to run: ``auto`` (the one the export chose), ``fp32`` or ``int8`` (opt-in).
PRECISIONS = ("auto", "fp32", "int8")
#: A row's outcome: a decision (``ok``), a frame the gate would not let the model judge (``needs_review``:
#: no class, the reason and the gate's scores), or an input that could not be used (``error``).
STATUSES = ("ok", "needs_review", "error")
#: The reason of the error row an image gets when the model's output for it is not a number.
NOT_FINITE = (
    "the model's output for this image is not a finite number (NaN or infinite): the model is broken; "
    "retrain or re-export it"
)


@dataclass(frozen=True)
class Prediction:
    """Result for one image; ``status`` is ``"ok"``, ``"needs_review"`` or ``"error"`` (:data:`STATUSES`).

    ``needs_review``: the gate found the frame is not one the model can judge (a blank or unfocused
    frame, the wrong camera, another product); it has no class, ``reason`` says why and ``gate`` holds
    the scores. ``error``: the input could not be used; ``reason`` says why. In the gate's ``warn`` mode
    a flagged frame keeps its class (``status="ok"``) with ``gate.flagged`` set.

    ``confidence`` is the probability of the predicted class, not of "defect": with a binary model
    decided at a low threshold a part can be called defective at a confidence below 0.5. ``warning``
    notes a problem that did not stop decoding (corrupt JPEG data, bad EXIF); the verdict is given but
    deserves a look.

    ``defect_probability`` is the one defect probability of the row, as every surface shows it (see
    :func:`defectlens.core.decision.defect_probability`): a binary model's calibrated probability of
    its defect class, the number the threshold is compared with; None for a multi-class model (no
    class is known to be the good one) and on rows without a decision.
    """

    file: str
    prediction: str
    confidence: float
    probabilities: dict[str, float]
    threshold: float | None
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    warning: str = ""
    gate: GateCheck | None = None
    defect_probability: float | None = None

    @property
    def ok(self) -> bool:
        """A decision was made (a class is given)."""
        return self.status == "ok"

    @property
    def needs_review(self) -> bool:
        """The gate flagged the frame (refused: no class; or, in ``warn`` mode, a class with the flag)."""
        return self.status == "needs_review" or (self.gate is not None and self.gate.flagged)

    @property
    def ood_score(self) -> float | None:
        return self.gate.ood_score if self.gate is not None else None

    @classmethod
    def error(cls, file: str, reason: str, *, threshold: float | None = None, latency_ms: float = 0.0) -> Prediction:
        """An error row: the input could not be used; the run goes on."""
        return cls(file, "", 0.0, {}, threshold, latency_ms, status="error", reason=reason)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "file": self.file,
            "prediction": self.prediction,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "threshold": self.threshold,
            "latency_ms": self.latency_ms,
            "status": self.status,
            **self.extra,
        }
        if self.defect_probability is not None:
            d["defect_probability"] = self.defect_probability
        if self.gate is not None:
            d["gate"] = self.gate.to_dict()
        if self.reason:
            d["reason"] = self.reason
        if self.warning:
            d["warning"] = self.warning
        return d


class Predictor:
    """Run a trained model on images exactly as it was trained.

    Build one with :meth:`load` (bundle, run folder or checkpoint) or :meth:`from_model`.

    Args:
        run_logits: function mapping a float32 batch in [0, 1], shape (N, C, H, W), to logits (N, K).
        spec: the model's spec (preprocessing, classes, threshold, temperature).
        backend: a short name for reports ("onnxruntime" or "torch").
        model_id: content hash of the bundle or checkpoint (None for an in-memory model).
        torch_factory: builds a fresh torch Classifier with the same weights (for Grad-CAM).
        meta: bundle ``spec.json`` or checkpoint provenance, for ``/info`` endpoints and reports.
        gate: the gate in force (:mod:`defectlens.inference.gate`); when it reads the graph's OOD score,
            ``run_logits`` returns the logits with the score as one more column.
        cam: the graph's feature runner and head weight, for :meth:`explain` (None: no CAM).
    """

    def __init__(
        self,
        run_logits: Callable[[np.ndarray], np.ndarray],
        spec: ModelSpec,
        *,
        backend: str,
        model_id: str | None = None,
        torch_factory: Callable[[], Any] | None = None,
        meta: dict[str, Any] | None = None,
        gate: Gate | None = None,
        cam: CamModel | None = None,
    ):
        self._run = run_logits
        self._cam = cam
        self.gate = gate or Gate(None, mode="off", member=None, note="an in-memory model has no reference profile")
        self.spec = spec
        self.backend = backend
        self.model_id = model_id
        self.meta = meta or {}
        self._torch_factory = torch_factory
        self._torch_model: Any = None
        self._explain_lock = threading.RLock()
        #: How ``backend="auto"`` picked the runtime of a bundle (:mod:`~defectlens.inference.runtime_choice`).
        self.runtime_choice: dict[str, Any] | None = None

    @classmethod
    def from_model(cls, model: Classifier, spec: ModelSpec, *, model_id: str | None = None) -> Predictor:
        """Wrap an in-memory torch Classifier (eval mode, CPU or its current device)."""
        return cls(
            backends.torch_runner(model),
            spec,
            backend="torch",
            model_id=model_id,
            torch_factory=lambda: copy.deepcopy(model).cpu(),
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        backend: str = "auto",
        threads: int | None = None,
        precision: str = "auto",
        gate: str = "refuse",
    ) -> Predictor:
        """Load a ``.dlens`` bundle (ONNX Runtime or OpenVINO), a run folder or a ``.pt`` checkpoint (torch).

        Args:
            path: bundle file, run folder (holding ``best.pt``) or checkpoint file.
            backend: ``auto`` (for a bundle the faster of the runtimes its export verified, timed on this
                CPU at the graph's first load and remembered, see :mod:`~defectlens.inference.runtime_choice`;
                torch for a checkpoint), ``onnx``, ``openvino`` or ``torch``.
            threads: CPU cores a batch is spread over (None: every usable core); one image uses one core
                with ``openvino``; with ``onnx`` a lone image on otherwise idle cores is split over them
                (see :mod:`~defectlens.inference.backends`; ``threads=1`` never splits). For ``torch``, its
                intra-op threads (None: torch's default).
            precision: for a bundle, ``auto`` runs the graph its export chose (INT8 only when it lost
                nothing on validation), ``fp32`` or ``int8`` (a bundle exported with ``--int8``).
            gate: ``refuse`` (a frame the model cannot judge gets no class: ``needs_review``), ``warn``
                (its class, flagged) or ``off``. Bundles exported without a reference profile and
                checkpoints have no gate (:attr:`gate` says so in its ``note``).

        Example:
            >>> predictor = Predictor.load("model.dlens")  # doctest: +SKIP
            >>> predictor.predict("part_0001.png").status  # doctest: +SKIP
            'ok'

        Raises:
            DefectlensError: for a missing, tampered or unsupported file, or an impossible backend or precision.
        """
        if backend not in BACKENDS:
            raise DefectlensError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise DefectlensError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        mode = check_gate_mode(gate)
        p = Path(path)
        if not p.exists():  # before the checkpoint branch: a missing file is not a reason to ask for torch
            raise DefectlensError(f"{p}: model file or run folder not found")
        if is_bundle(p):
            return cls._from_bundle(p, backend=backend, threads=threads, precision=precision, gate=mode)
        if backend in backends.ONNX_RUNTIMES or precision == "int8":
            what = "an INT8 graph" if precision == "int8" else f"the {backend} backend"
            raise DefectlensError(f"{p}: {what} needs a bundle; create one with 'defectlens export {p}'")
        from defectlens.models import load_checkpoint, model_from_state

        ckpt = p / "best.pt" if p.is_dir() else p
        model, spec, payload = load_checkpoint(ckpt)
        model_id = hashlib.sha256(ckpt.read_bytes()).hexdigest()
        state = {k: v.clone() for k, v in model.state_dict().items()}

        def rebuild() -> Any:
            return model_from_state(state, spec)

        meta: dict[str, Any] = {k: payload[k] for k in ("config", "metrics", "data_fingerprint") if k in payload}
        run = backends.torch_runner(model, threads=threads)
        note = "a checkpoint has no reference profile: export a bundle ('defectlens export') to gate frames"
        checkpoint_gate = Gate(None, mode=mode, member=None, note=note)
        return cls(
            run, spec, backend="torch", model_id=model_id, torch_factory=rebuild, meta=meta, gate=checkpoint_gate
        ).probed(str(p))

    @classmethod
    def _from_bundle(cls, p: Path, *, backend: str, threads: int | None, precision: str, gate: GateMode) -> Predictor:
        bundle = read_bundle(p)
        spec = bundle.spec
        cam_model: CamModel | None = None
        profile = bundle.profile
        weights = bundle.members[WEIGHTS_FILE]

        def factory() -> Any:
            try:
                return backends.torch_model_from_weights(weights, spec)
            except DefectlensError:
                raise
            except Exception as exc:  # safetensors or load_state_dict on weights that do not fit the spec
                raise DefectlensError(f"{p}: refused: model.safetensors does not fit {spec.arch} ({exc})") from None

        choice: runtime_choice.Choice | None = None
        if backend == "torch":  # the FP32 weights, whichever graph the export made the default
            if precision == "int8":
                raise DefectlensError(f"{p}: the torch backend runs the FP32 weights; use --precision fp32")
            run = backends.torch_runner(factory(), threads=threads)
            name = "torch"
            gate_in_force = Gate(profile, mode=gate, member=None)
        else:
            member = _graph_member(bundle.meta, bundle.members, precision, p)
            gate_in_force = Gate(profile, mode=gate, member=member)

            def build(runtime: str) -> runtime_choice.Built:
                make = backends.openvino_runner if runtime == "openvino" else backends.onnx_runner
                return make(
                    bundle.members[member], threads=threads, name=f"{p}:{member}", with_ood=gate_in_force.wants_ood
                )

            choice = runtime_choice.choose(
                bundle.members[member],
                _runtimes_for(bundle.meta, member, backend, p),
                build,
                threads=backends.resolve_threads(threads),
                sample_shape=(1, spec.in_channels, spec.input_size, spec.input_size),
            )
            run, graph = choice.built
            check_graph(graph, spec, str(p))
            name = backends.RUNTIME_LABELS[choice.runtime] + ("-int8" if member == INT8_FILE else "")
            cam_model = _cam_model(bundle.meta, bundle.members, graph, name=name, int8=member == INT8_FILE)
        predictor = cls(
            run,
            spec,
            backend=name,
            model_id=bundle.model_id,
            torch_factory=factory,
            meta=bundle.meta,
            gate=gate_in_force,
            cam=cam_model,
        )
        predictor.runtime_choice = choice.report() if choice else None
        return predictor.probed(str(p))

    @classmethod
    def from_onnx(
        cls, data: bytes, spec: ModelSpec | None = None, *, threads: int | None = None, name: str = "model.onnx"
    ) -> Predictor:
        """A plain ONNX graph (no bundle): its embedded spec, or ``spec`` when given (which overrides it).

        An exported defectlens graph takes a float batch in [0, 1], (N, C, H, W), and normalises inside
        itself. A graph from elsewhere (no embedded spec) gets its input normalised here with
        ``spec.mean``/``spec.std``, as ``(x - mean) / std``: describe it in ``spec`` (the inspector's
        advanced panel does). Such a predictor has no torch weights, so no Grad-CAM.

        Raises:
            DefectlensError: when the bytes are not an ONNX model, or no spec is embedded or given.
        """
        run, session = backends.onnx_runner(data, threads=threads, name=name)
        embedded = backends.embedded_spec(session)
        if spec is None and embedded is None:
            raise DefectlensError(
                f"{name}: the ONNX file carries no defectlens spec; give the class names, channels, input size "
                "and normalisation it expects"
            )
        chosen = spec or embedded
        assert chosen is not None
        check_graph(session, chosen.check(), name)
        model_id = hashlib.sha256(data).hexdigest()
        if embedded is None:  # a foreign graph expects normalised input; ours normalise inside
            run = backends.normalizing(run, mean=chosen.mean, std=chosen.std)
        return cls(
            run,
            chosen,
            backend="onnxruntime",
            model_id=model_id,
            meta={"source": name, "embedded_spec": embedded is not None},
        ).probed(name)

    def probed(self, name: str) -> Predictor:
        """This predictor, after one model call on a fixed noise image of the spec's input shape.

        The load checks compare fixed dimensions only; a graph with open dimensions that disagrees
        with its spec, or a model whose outputs are NaN (a diverged training run, a damaged or
        crafted bundle), would otherwise pass and then fail on every image, or give a verdict for
        every part from numbers that mean nothing.

        Raises:
            DefectlensError: naming ``name`` and what the model did with the probe.
        """
        s = self.spec
        # one image: a foreign graph may fix its batch at 1
        probe = np.random.default_rng(0).integers(0, 256, (1, s.in_channels, s.input_size, s.input_size), np.uint8)
        try:
            logits, _ = self.outputs(probe)
        except DefectlensError:
            raise
        except Exception as exc:  # the runtime's own error type: a shape or type its graph does not take
            raise DefectlensError(
                f"{name}: refused: the model fails on input of its spec's shape [N, {s.in_channels}, {s.input_size}, "
                f"{s.input_size}] ({type(exc).__name__}: {str(exc).strip()[:300]}); the graph does not match its spec"
            ) from None
        if logits.shape != (1, s.num_classes):
            raise DefectlensError(
                f"{name}: refused: the model returns {list(logits.shape)} for 1 image; its spec has "
                f"{s.num_classes} classes, so the graph does not match its spec"
            )
        if not np.isfinite(logits).all():
            raise DefectlensError(
                f"{name}: refused: the model's outputs are not finite numbers (NaN or infinite); its weights "
                "diverged in training or are damaged: retrain it (with a lower --lr) or export it again"
            )
        return self

    # -- the pipeline ---------------------------------------------------------------------------

    def preprocess(self, source: Source) -> np.ndarray:
        """One image (path, bytes, PIL image, numpy array, or a ``DecodedImage`` already through the
        decode rule) to a uint8 array (C, H, W).

        Every input type gets the same decode rule (format allow-list, pixel limit, EXIF rotation):
        see :mod:`defectlens.data.images`.

        Raises:
            ImageError: when the input cannot be used.
        """
        return prepare_frame(source, self.spec).array

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw logits (before temperature) for a uint8 batch (N, C, H, W), and the graph's OOD scores
        (N,) when the gate reads them (else None)."""
        x = np.ascontiguousarray(batch, dtype=np.float32) / np.float32(255.0)
        out = np.asarray(self._run(x), dtype=np.float32)
        if self.gate.wants_ood:
            k = self.spec.num_classes
            return out[:, :k], out[:, k]
        return out, None

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (before temperature) for a uint8 batch (N, C, H, W)."""
        return self.outputs(batch)[0]

    def judge(
        self, arrays: Sequence[np.ndarray], sizes: Sequence[tuple[int, int] | None]
    ) -> tuple[np.ndarray, list[GateCheck | None]]:
        """One model call on prepared inputs (uint8 (C, H, W) each): raw logits (N, K), and the gate's
        finding for each (from its statistics, its decoded ``sizes`` and the graph's OOD score; None
        each while the gate is inactive). Every surface that batches on its own (the web service,
        evaluation) gates through this, as :meth:`predict_many` does."""
        logits, ood = self.outputs(np.stack(arrays))
        checks = [
            self.gate.check(a, size, None if ood is None else float(ood[i]))
            for i, (a, size) in enumerate(zip(arrays, sizes, strict=True))
        ]
        return logits, checks

    def score_files(
        self,
        sources: Sequence[Any],
        *,
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Raw logits (N, K) of many images, preprocessed and run ``batch_size`` at a time.

        Unlike :meth:`predict_many`, an unreadable image raises (evaluation data must all be usable).
        """
        return self.score_and_check(sources, batch_size=batch_size, on_batch=on_batch)[0]

    def score_and_check(
        self,
        sources: Sequence[Any],
        *,
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, list[GateCheck | None]]:
        """:meth:`score_files`, and the gate's finding for each image (None each while the gate is inactive).

        The findings are those :meth:`predict_many` would give the same images, so an evaluation's
        coverage is the share of frames the deployed model would judge.
        """
        chunks: list[np.ndarray] = []
        checks: list[GateCheck | None] = []
        for start in range(0, len(sources), batch_size):
            frames = [prepare_frame(s, self.spec) for s in sources[start : start + batch_size]]
            logits, found = self.judge([f.array for f in frames], [f.size for f in frames])
            chunks.append(logits)
            checks += found
            if on_batch is not None:
                on_batch(len(frames))
        logits = np.concatenate(chunks) if chunks else np.zeros((0, self.spec.num_classes), np.float32)
        return logits, checks

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (softmax of logits / temperature)."""
        return softmax(logits, self.spec.temperature)

    def decide(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Class index per row: binary tasks compare the positive-class probability with the
        threshold; otherwise (or with no threshold) the most probable class wins."""
        t = self.spec.threshold if threshold is None else check_threshold(threshold)
        return decide(probs, positive_index=self.spec.positive_index, threshold=t)

    def _result(
        self, item: _Item, probs: np.ndarray, idx: int, threshold: float | None, check: GateCheck | None
    ) -> Prediction:
        names = self.spec.class_names
        t = self.spec.threshold if threshold is None else threshold
        if self.gate.refuses(check):
            assert check is not None
            return Prediction(
                item.name, "", 0.0, {}, t, item.latency_ms, status="needs_review", reason=check.reason,
                warning=item.warning, gate=check,
            )  # fmt: skip
        if not np.isfinite(probs).all():  # a broken model must never give a verdict
            return Prediction.error(item.name, NOT_FINITE, threshold=t, latency_ms=item.latency_ms)
        probabilities = {n: float(p) for n, p in zip(names, probs, strict=True)}
        return Prediction(
            file=item.name,
            prediction=names[idx],
            confidence=float(probs[idx]),
            probabilities=probabilities,
            threshold=t,
            latency_ms=item.latency_ms,
            warning=item.warning,
            gate=check,
            defect_probability=defect_probability(
                probabilities, class_names=names, positive_class=self.spec.positive_class
            ),
        )

    def predict(self, source: Source, *, threshold: float | None = None, name: str | None = None) -> Prediction:
        """Classify one image (path, bytes, PIL image or array); unreadable input raises ImageError.

        A frame the gate flags comes back with ``status="needs_review"`` and no class (``refuse`` mode).

        Example:
            >>> Predictor.load("model.dlens").predict("part_0001.png").prediction  # doctest: +SKIP
            'ok'
        """
        check_threshold(threshold)
        start = time.perf_counter()
        label = name or _name_of(source)
        frame = prepare_frame(source, self.spec, name=label)
        item = _Item(label, frame.array, "; ".join(frame.warnings), 0.0, frame.size)
        return self._flush([item], threshold, started=start)[0]

    def predict_many(
        self, sources: Iterable[Any], *, batch_size: int = 16, threshold: float | None = None
    ) -> Iterator[Prediction]:
        """Classify many images in batches, yielding one result per input, in input order.

        Args:
            sources: paths, bytes, PIL images, or ``(name, source)`` pairs (e.g. uploaded files).
            batch_size: images per model call.
            threshold: overrides the spec's decision threshold (binary tasks).

        An input that cannot be read, for whatever reason, yields an error row (``status="error"``,
        ``reason``) and the run goes on; one that decodes with a problem (corrupt JPEG data) yields its
        verdict with ``warning`` set; one the gate flags yields ``status="needs_review"``. ``latency_ms``
        of a row is its own decoding time plus its share of the batch.

        Example:
            >>> rows = Predictor.load("model.dlens").predict_many(["a.png", "b.png"])  # doctest: +SKIP
            >>> [r.status for r in rows]  # doctest: +SKIP
            ['ok', 'needs_review']
        """
        if batch_size < 1:
            raise DefectlensError(f"batch_size must be at least 1, got {batch_size}")
        t = self.spec.threshold if threshold is None else check_threshold(threshold)
        return self._batches(sources, batch_size, t)  # checked here, when called, not at the first row

    def _batches(self, sources: Iterable[Any], batch_size: int, t: float | None) -> Iterator[Prediction]:
        chunk: list[_Item] = []
        for i, item in enumerate(sources):
            name, source = item if isinstance(item, tuple) else (_name_of(item, i), item)
            chunk.append(self._prepare_one(name, source))
            if len(chunk) == batch_size:
                yield from self._flush(chunk, t)
                chunk = []
        if chunk:
            yield from self._flush(chunk, t)

    def _prepare_one(self, name: str, source: Source) -> _Item:
        """Decode one input for a batch: its array, warnings and size, or the reason it cannot be used."""
        start = time.perf_counter()
        size = None
        try:
            frame = prepare_frame(source, self.spec, name=name)
            result: np.ndarray | str = frame.array
            notes, size = frame.warnings, frame.size
        except ImageError as exc:
            result, notes = exc.reason, ()
        except Exception as exc:  # never lose the batch over one input, whatever went wrong with it
            result, notes = f"cannot read this input ({type(exc).__name__}: {exc})", ()
        return _Item(name, result, "; ".join(notes), (time.perf_counter() - start) * 1000.0, size)

    def _flush(self, chunk: list[_Item], threshold: float | None, *, started: float | None = None) -> list[Prediction]:
        good = [item for item in chunk if isinstance(item.array, np.ndarray)]
        share, probs, idx = 0.0, np.empty((0, 0)), np.empty(0, dtype=int)
        checks: list[GateCheck | None] = []
        if good:
            start = time.perf_counter()
            logits, checks = self.judge([item.array for item in good], [item.size for item in good])  # type: ignore[misc]
            probs = self.probabilities(logits)
            idx = self.decide(probs, threshold)
            share = (time.perf_counter() - start) * 1000.0 / len(good)
        out, k = [], 0
        for item in chunk:
            if isinstance(item.array, str):
                out.append(Prediction.error(item.name, item.array, threshold=threshold, latency_ms=item.decode_ms))
                continue
            check = checks[k]
            done = item.timed(
                (time.perf_counter() - started) * 1000.0 if started is not None else item.decode_ms + share
            )
            out.append(self._result(done, probs[k], int(idx[k]), threshold, check))
            k += 1
        return out

    # -- explanation ------------------------------------------------------------------------------

    @property
    def cam_method(self) -> str | None:
        """How :meth:`explain` explains (``"CAM (onnxruntime)"``), or None when this predictor cannot:
        a graph without the feature output (exported before it, or a head where CAM is not Grad-CAM),
        the torch backend, an in-memory model. Grad-CAM through torch is then the way
        (:mod:`defectlens.explain`)."""
        return None if self._cam is None else self._cam.method

    def explain(self, source: Source, *, target: int | str | None = None) -> ClassActivation:
        """The class activation map of one image from the graph's feature output, in NumPy (no torch).

        Args:
            source: path, bytes, PIL image or array.
            target: class index or name to explain; default: the class the model decides.

        Returns:
            The map at the decoded image's size, the class, the probabilities and the method's name.

        Example:
            >>> Predictor.load("model.dlens").explain("part_0001.png").heatmap.shape  # doctest: +SKIP
            (300, 300)

        Raises:
            DefectlensError: when this predictor has no CAM (:attr:`cam_method` is None) or ``target``
                names no class; ImageError for input that cannot be used.
        """
        if self._cam is None:
            raise DefectlensError(
                "this model's graph has no feature output for a class activation map (exported before it, "
                "a dense head, or the torch backend); Grad-CAM through torch explains it instead"
            )
        frame = prepare_frame(source, self.spec)
        x = frame.array[None].astype(np.float32) / np.float32(255.0)
        logits, features = self._cam.run(x)
        probs = self.probabilities(logits)[0]
        index = self.class_index(target, probs)
        size = self.spec.input_size
        heat = self._cam.heatmap(features[0], index, input_size=size, size=frame.size)
        return ClassActivation(heat, index, probs, self._cam.method)

    def anomaly_map(self, source: Source) -> np.ndarray:
        """An anomaly model's raw map (S, S) at the input size, in its score's units: what pixel figures rank
        (:meth:`explain` draws it with the bundle's fixed range for an overlay).

        Raises:
            DefectlensError: for a model that is not an anomaly bundle; ImageError for unusable input.
        """
        if self._cam is None or self._cam.map_range is None:
            raise DefectlensError("this model has no anomaly map: it is not an anomaly bundle (train --task anomaly)")
        frame = prepare_frame(source, self.spec)
        _, maps = self._cam.run(frame.array[None].astype(np.float32) / np.float32(255.0))
        return np.asarray(maps[0, 0], np.float32)

    def class_index(self, target: int | str | None, probs: np.ndarray) -> int:
        """The class to explain: ``target`` (index or name) checked against the spec, or the decided one.

        Raises:
            DefectlensError: for a name the model does not know or an index out of range.
        """
        names = self.spec.class_names
        if target is None:
            return int(self.decide(probs[None])[0])
        if isinstance(target, str):
            if target not in names:
                raise DefectlensError(f"unknown target class {target!r}; the model knows {', '.join(names)}")
            return names.index(target)
        if not 0 <= int(target) < len(names):
            raise DefectlensError(f"target index {target} out of range for {len(names)} classes")
        return int(target)

    @property
    def has_torch_weights(self) -> bool:
        """True when :meth:`torch_model` can build a torch copy (bundles and checkpoints can)."""
        return self._torch_factory is not None

    def torch_model(self) -> Any:
        """A private torch copy of the network (built on first use) for Grad-CAM and fine-tuning."""
        if self._torch_factory is None:
            raise DefectlensError("this predictor has no torch weights; load it from a bundle or checkpoint")
        with self._explain_lock:
            if self._torch_model is None:
                self._torch_model = self._torch_factory().eval()
        return self._torch_model

    @property
    def explain_lock(self) -> threading.RLock:
        """Held while Grad-CAM runs (its hooks make the torch copy single-use at a time)."""
        return self._explain_lock

    def info(self) -> dict[str, Any]:
        """What a service reports about its model: id, backend, spec, metrics and versions."""
        return {
            "model_id": self.model_id,
            "backend": self.backend,
            "runtime_choice": self.runtime_choice,
            "spec": self.spec.to_dict(),
            "metrics": self.meta.get("metrics"),
            "versions": self.meta.get("versions"),
        }


@dataclass(frozen=True)
class _Item:
    """One input of a batch after decoding: its array, or the reason it could not be used."""

    name: str
    array: np.ndarray | str
    warning: str
    decode_ms: float
    size: tuple[int, int] | None = None
    latency_ms: float = 0.0

    def timed(self, latency_ms: float) -> _Item:
        return replace(self, latency_ms=latency_ms)


def _name_of(source: Any, index: int | None = None) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    label = source_label(source).strip("<>")
    return f"<{label}>" if index is None else f"<{label} {index}>"


def check_graph(session: Any, spec: ModelSpec, name: str) -> None:
    """Refuse an ONNX graph whose input or output shape contradicts ``spec`` (fixed dimensions only).

    The graph must take (N, in_channels, input_size, input_size) floats and return (N, classes)
    logits; a mismatch would otherwise fail on every image, or silently read the wrong outputs.

    Raises:
        DefectlensError: naming the graph, the shapes it declares and what the spec says.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want_in = [None, spec.in_channels, spec.input_size, spec.input_size]
    shape_in = list(inputs[0].shape) if inputs else []
    shape_out = list(outputs[0].shape) if outputs else []
    problems = []
    if len(inputs) != 1 or len(shape_in) != 4 or "float" not in str(inputs[0].type):
        problems.append(f"it takes {len(inputs)} input(s), the first {inputs[0].type if inputs else '-'} {shape_in}")
    elif any(isinstance(g, int) and w is not None and g != w for g, w in zip(shape_in, want_in, strict=True)):
        problems.append(f"its input is {shape_in}")
    if len(shape_out) != 2 or (isinstance(shape_out[1], int) and shape_out[1] != spec.num_classes):
        problems.append(f"its output is {shape_out}")
    if problems:
        raise DefectlensError(
            f"{name}: refused: the ONNX graph does not match its spec ({'; '.join(problems)}; the spec expects input "
            f"[N, {spec.in_channels}, {spec.input_size}, {spec.input_size}] and output [N, {spec.num_classes}])"
        )


def _graph_member(meta: dict[str, Any], members: dict[str, bytes], precision: str, path: Path) -> str:
    """The bundle member holding the graph for ``precision`` (``auto``: the one the export chose)."""
    if precision == "int8":
        if INT8_FILE not in members:
            raise DefectlensError(f"{path}: this bundle has no INT8 graph; export it again with --int8")
        return INT8_FILE
    if precision == "fp32":
        return ONNX_FILE
    chosen = str(meta.get("default_onnx", ONNX_FILE))
    return chosen if chosen in members else ONNX_FILE


def _cam_model(
    meta: dict[str, Any], members: dict[str, bytes], graph: Any, *, name: str, int8: bool
) -> CamModel | None:
    """The CAM of a bundle graph whose ``spec.json`` names the head's weight and whose graph has the
    feature output (the INT8 graph's: when its own check at export passed); None otherwise (an older
    bundle, a dense head: Grad-CAM through torch)."""
    if int8 and not (((meta.get("int8") or {}).get("cam") or {}).get("ok")):
        return None
    weight = cam.head_weight(meta, members)
    run = cam.feature_runner(graph) if weight is not None else None
    if weight is None or run is None:
        return None
    span = cam.map_range(meta)
    return CamModel(run, weight, f"{'anomaly map' if span else 'CAM'} ({name})", span)


def _runtimes_for(meta: dict[str, Any], member: str, backend: str, path: Path) -> list[str]:
    """The ONNX runtimes ``member`` may run on, in rule order: for ``auto`` the rule's pick first, then every
    other runtime the export verified that is installed here (:mod:`~defectlens.inference.runtime_choice`
    times them); else the one asked for, unless the export found it wrong."""
    int8 = member == INT8_FILE
    checks = ((meta.get("int8") if int8 else meta.get("parity")) or {}).get("backends") or {}
    verified = [r for r, c in checks.items() if isinstance(c, dict) and c.get("ok")]
    if backend == "auto":
        first = backends.auto_backend(verified=verified)
        return [first] + [r for r in backends.ONNX_RUNTIMES if r != first and r in verified and backends.installed(r)]
    check = checks.get(backend)
    if isinstance(check, dict) and check.get("ok") is False:
        raise DefectlensError(
            f"{path}: refused: this graph failed its export check on the {backend} backend "
            f"({check.get('reason', 'see spec.json')}); use --backend onnx"
        )
    return [backend]
