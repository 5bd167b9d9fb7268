"""The inspector's controller: the state the window shows and every action it offers, without Tk.

:class:`Inspector` owns the loaded model, the batch (:class:`~defectlens.gui.session.Session`), the
shared inspection log (behind its own thread, :class:`~defectlens.gui.logwriter.LogWriter`), the settings
and the background :class:`~defectlens.gui.scoring.Worker`. The operating point (threshold and positive
class) is remembered per model; one that is not the model's validated one is said (:meth:`threshold_note`).
The window calls its actions (open a model, a folder or an image, move the threshold, ask for a
Grad-CAM map, give a verdict, export) and calls :meth:`Inspector.poll` from its ``after()`` loop to
receive what background work finished, as :class:`Event` values to draw. Tests drive it the same way.
"""

from __future__ import annotations

import functools
import getpass
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GateMode, check_gate_mode
from defectlens.explain.maps import explain
from defectlens.gui import report, settings
from defectlens.gui.logwriter import LogWriter, history
from defectlens.gui.model import Advanced, LoadedModel, load_model
from defectlens.gui.scoring import Failed, Figures, Finished, JobDone, Message, Scored, Worker
from defectlens.gui.session import Session
from defectlens.inspections import InspectionLog
from defectlens.inspections.engine import Location, parse_location
from defectlens.workflows.predict import collect_inputs


@dataclass(frozen=True)
class Event:
    """Something for the window to draw: ``kind`` is ``loading``, ``model``, ``model_error``, ``progress``,
    ``scored``, ``score_error``, ``gradcam``, ``gradcam_error``, ``history``, ``history_error``, ``verdict`` or
    ``verdict_error``; ``text`` is for the status line, ``note`` for a notice the operator must see until
    dismissed."""

    kind: str
    text: str = ""
    data: Any = None
    note: str = ""


class Inspector:
    """Everything the inspector window does, testable without a display.

    Args:
        db: the inspection log (default: the one the settings name, when it still exists, else
            :func:`~defectlens.gui.settings.default_db_path`; :attr:`db_origin` says which).
        settings_file: the settings JSON (default: the user's config folder).
        threads: CPU threads for inference (default: all cores but one, which stays with the window).
        batch_size: images per model call while scoring a folder.
        seed: seed of the Random button.
        gate: the mode of a bundle's gate (``refuse``: a frame the model cannot judge gets no class and is
            shown as needing review; ``warn``: its class, flagged; ``off``).
    """

    def __init__(
        self,
        *,
        db: str | Path | None = None,
        settings_file: Path | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        seed: int | None = None,
        gate: GateMode = "refuse",
    ):
        self.gate = check_gate_mode(gate)
        self.settings_file = settings_file
        self.settings, warning = settings.load_settings(settings_file)
        self.notices = [warning] if warning else []
        self.db_path, self.db_origin, note = _choose_db(db, self.settings)
        self.notices += [note] if note else []
        self.worker = Worker()
        self.writer = LogWriter(self.db_path, self.worker.messages)
        self._forgetting = False  # settings were reset: nothing is saved until the operator changes something
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 2) - 1)
        self.batch_size, self.seed = batch_size, seed
        self.model: LoadedModel | None = None
        self.advanced: Advanced | None = None
        self.session = Session(seed=seed)
        self.source: Path | None = None  # the folder or single image of the batch
        self.scoring, self.loading = False, False
        self.last_rate: float | None = None  # images/s of the last completed scoring run
        self._overlays: dict[tuple[int, str], Image.Image] = {}
        self._asked: set[tuple[int, str]] = set()
        self._figures = Figures(self.worker)  # submits the warm-up job: the NumPy metrics once on a toy batch
        self.jobs = 1

    # -- opening things ----------------------------------------------------------------------------

    def start(self, *, model: str | Path | None = None, folder: str | Path | None = None) -> None:
        """Open what the command line named, else what the settings remember (when it still exists)."""
        model = model or _existing(self.settings.last_model)
        folder = folder or _existing(self.settings.last_folder)
        if folder:
            self.open_source(folder)
        if model:
            same = str(Path(model)) == self.settings.last_model and self.settings.advanced
            self.open_model(model, advanced=Advanced.from_dict(self.settings.advanced or {}) if same else None)

    @property
    def log(self) -> InspectionLog | None:
        """The inspection log's connection (the log's thread's; for scripts and tests: the window never uses
        it, so a locked log cannot freeze it). None while it is being reopened after a failed write."""
        return self.writer.log

    def open_model(self, path: str | Path, *, advanced: Advanced | None = None) -> Event:
        """Load a model in the background; an ``model`` or ``model_error`` event follows from :meth:`poll`."""
        self.loading, self.jobs, self._forgetting = True, self.jobs + 1, False
        path = Path(path)

        def job() -> tuple[LoadedModel, Advanced | None]:
            return load_model(path, advanced=advanced, threads=self.threads, gate=self.gate), advanced

        self.worker.submit("model", job)
        return Event("loading", f"loading {path.name}...")

    def open_source(self, path: str | Path) -> None:
        """Open an image or a folder (class subfolders named after model classes give ground truth); scores it
        when a model is loaded.

        Raises:
            DefectlensError: when the path does not exist or the folder holds no files.
        """
        self.source, self._forgetting = Path(path), False
        self._collect()

    def _collect(self) -> None:
        if self.source is None:
            return
        inputs = collect_inputs(self.source, self.session.class_names)
        self.session.set_inputs(inputs.files, inputs.truth)
        self._overlays.clear()
        self._asked.clear()
        if self.model is not None and self.session.items:
            self.scoring = True
            self.worker.score(self.model.predictor, inputs.files, batch_size=self.batch_size)
            model_id = self.model.predictor.model_id
            if model_id is not None:  # earlier verdicts on these images, shown once the log answers
                self.jobs += 1
                job = history([item.path for item in self.session.items], model_id)
                self.writer.submit("history", job, token=self.session)

    def _install(self, loaded: LoadedModel, advanced: Advanced | None) -> str:
        """Put ``loaded`` in force at the operating point the settings remember for it; returns a note for the
        operator when that point is not the model's own."""
        spec = loaded.spec
        threshold, positive = self._remembered_point(loaded)
        if threshold is None and positive is not None:
            threshold = 0.5
        self.model, self.advanced = loaded, advanced
        self.session = Session(
            spec.class_names, positive_class=positive, threshold=threshold, costs=loaded.costs, seed=self.seed
        )
        self.save_settings()
        self._collect()
        off = self.threshold_note()
        return f"{off}: restored from your settings; 'Back to the model's' returns to it" if off else ""

    def _remembered_point(self, loaded: LoadedModel) -> tuple[float | None, str | None]:
        """The (threshold, positive class) the settings keep for this model (by model id), else the model's."""
        spec = loaded.spec
        point = self.settings.operating_point(_model_key(loaded))
        if point is None and str(loaded.path) == self.settings.last_model and self.settings.threshold is not None:
            point = (self.settings.threshold, self.settings.positive_class)  # written by an older version
        if point is None or (point[1] is not None and point[1] not in spec.class_names):
            return spec.threshold, spec.positive_class
        return point

    @property
    def model_point(self) -> tuple[float | None, str | None]:
        """The model's own (validated) threshold and positive class; (None, None) without a model."""
        if self.model is None:
            return None, None
        return self.model.spec.threshold, self.model.spec.positive_class

    @property
    def off_model_point(self) -> bool:
        """True when the threshold or positive class in force is not the model's own."""
        s = self.session
        return self.model is not None and (s.threshold, s.positive_class) != self.model_point

    def threshold_note(self) -> str:
        """``threshold 0.620 (the model's validated: 0.450)`` when the operating point is not the model's
        own, else empty."""
        if not self.off_model_point:
            return ""
        s, (threshold, positive) = self.session, self.model_point
        now = "most probable class" if not s.uses_threshold else f"threshold {s.threshold:.3f} on p({s.positive_class})"
        own = "most probable class" if threshold is None or positive is None else f"{threshold:.3f} on p({positive})"
        return f"{now} (the model's validated: {own})"

    # -- background results --------------------------------------------------------------------------

    def poll(self, limit: int = 200) -> list[Event]:
        """Apply what background work reported since the last call; returns what to draw (never blocks)."""
        events: list[Event] = []
        for message in self.worker.drain(limit):
            event = self._handle(message)
            if event is not None:
                events.append(event)
        return events

    def _handle(self, message: Message) -> Event | None:
        if isinstance(message, JobDone):
            self.jobs -= 1
            if message.kind in ("history", "verdict"):
                return self._logged(message)
            return self._job_done(message)
        if message.generation != self.worker.generation:
            return None  # a folder the operator has since replaced
        if isinstance(message, Scored):
            for k, prediction in enumerate(message.predictions):
                self.session.apply(message.start + k, prediction)
            return Event("progress", data=(self.session.scored, len(self.session.items)))
        self.scoring = False
        if isinstance(message, Failed):
            return Event("score_error", f"scoring stopped: {message.reason}")
        assert isinstance(message, Finished)
        self.last_rate = message.count / message.seconds if message.seconds > 0 else None
        errors = sum(bool(item.error) for item in self.session.items)
        review = sum(item.refused for item in self.session.items)
        rate = f" ({self.last_rate:.0f} img/s)" if self.last_rate else ""
        text = f"scored {message.count} images in {message.seconds:.1f} s{rate}; {review} need review; "
        text += f"{errors} unreadable"
        return Event("scored", text)

    def _job_done(self, job: JobDone) -> Event | None:
        if job.kind in ("warmup", "metrics"):
            if self._figures.done(job):
                self.request_metrics()
            if job.error:
                return Event("metrics_error", f"figures not computed: {job.error}")
            return Event("ready" if job.kind == "warmup" else "metrics")
        if job.kind == "model":
            self.loading = False
            if job.error is not None:
                return Event("model_error", f"model not loaded: {job.error}")
            loaded, advanced = job.result
            note = self._install(loaded, advanced)
            return Event("model", f"model loaded: {loaded.describe()}", note=note)
        index, target, model = job.token
        self._asked.discard((index, target))
        if model is not self.model:
            return None  # the model changed while the map was computed
        if job.error is not None:
            return Event("gradcam_error", f"{self.explain_method} failed: {job.error}")
        self._overlays[(index, target)] = job.result.overlay
        return Event("gradcam", data=index)

    @property
    def busy(self) -> bool:
        return self.scoring or self.loading or self.jobs > 0

    def wait(self, timeout: float = 60.0) -> list[Event]:
        """Poll until no background work is left (for scripts and tests; the window uses :meth:`poll`)."""
        events, deadline = self.poll(), time.monotonic() + timeout
        while self.busy:
            if time.monotonic() > deadline:
                raise TimeoutError(f"inspector still busy after {timeout} s")
            time.sleep(0.01)
            events += self.poll()
        return events

    def request_metrics(self) -> None:
        """Recompute :attr:`figures` at the current threshold in the background; a ``metrics`` event
        says when they are in."""
        if self._figures.request(self._figures_key(), self.session.metrics_input):
            self.jobs += 1

    def _figures_key(self) -> tuple[object, ...]:
        s = self.session
        return (id(s), s.threshold, s.positive_class, s.scored)

    @property
    def figures(self) -> dict[str, Any] | None:
        """The last metrics computed (see :meth:`request_metrics`); None without labelled images."""
        return self._figures.value

    @property
    def metrics_ready(self) -> bool:
        return self._figures.ready

    @property
    def figures_current(self) -> bool:
        """True when :attr:`figures` are those of the batch and threshold shown now."""
        return self._figures.key == self._figures_key()

    # -- threshold ------------------------------------------------------------------------------------

    def set_threshold(self, value: float) -> None:
        self.session.set_threshold(value)
        self._forgetting = False

    def set_positive_class(self, name: str | None) -> None:
        self.session.set_positive_class(name)
        self._forgetting = False
        if name is not None and self.session.threshold is None:
            self.session.set_threshold(0.5)

    def restore_validated(self) -> None:
        """Back to the positive class and threshold the model was validated with."""
        if self.model is None or self.model.validated_threshold is None:
            raise DefectlensError("this model carries no validated threshold")
        self.session.set_positive_class(self.model.validated_positive)
        self.session.set_threshold(self.model.validated_threshold)
        self._forgetting = False

    # -- Grad-CAM -------------------------------------------------------------------------------------

    def gradcam_unavailable(self) -> str | None:
        return "load a model first" if self.model is None else self.model.gradcam_unavailable()

    @property
    def explain_method(self) -> str:
        """How the loaded model's overlay is made (``"CAM (onnxruntime)"`` or ``"Grad-CAM (torch)"``)."""
        return "Grad-CAM" if self.model is None else self.model.explain_method

    def overlay(self, index: int) -> Image.Image | None:
        """The explanation overlay of image ``index`` for its current decision (the graph's CAM, or Grad-CAM
        through torch); asks for it when missing."""
        view = self.session.view(index)
        if view.prediction is None or self.model is None or self.gradcam_unavailable():
            return None
        key = (index, view.prediction)
        if key not in self._overlays and key not in self._asked:
            self._asked.add(key)
            self.jobs += 1
            job = functools.partial(explain, self.model.predictor, view.item.path, target=view.prediction)
            self.worker.submit("gradcam", job, token=(*key, self.model))
        return self._overlays.get(key)

    # -- verdicts, export, settings ----------------------------------------------------------------------

    def record_verdict(self, verdict: str, *, label: str | None = None, comment: str = "") -> None:
        """The operator's verdict on the current image, written to the inspection log off the window's thread:
        a ``verdict`` event says it was saved, a ``verdict_error`` event that it was not, and why.

        Raises:
            DefectlensError: when there is nothing to judge, or the verdict does not fit the image.
        """
        if self.model is None or self.session.position is None:
            raise DefectlensError("no image to judge: load a model and open an image or a folder")
        index = self.session.position
        pending = report.prepare_verdict(
            self.session,
            self.model.spec,
            self.model.predictor.model_id,
            index,
            verdict,
            label=label,
            comment=comment,
            operator=_login(),
        )
        item = self.session.items[index]
        item.saving, self.jobs = True, self.jobs + 1
        job = functools.partial(report.write_verdict, pending=pending)
        self.writer.submit("verdict", lambda log, rows: job(log, rows=rows), token=(self.session, index))

    def _logged(self, job: JobDone) -> Event | None:
        """Apply what the log's thread answered: a batch's earlier verdicts, or a verdict saved or not."""
        if job.kind == "history":
            if job.token is not self.session or job.error is not None:
                return None if job.error is None else Event("history_error", f"earlier verdicts not read: {job.error}")
            shown = 0
            for item, row in zip(self.session.items, job.result, strict=True):
                if row is not None and item.inspection_id is None:
                    report.apply_row(item, row)
                    shown += row.verdict is not None
            return Event("history", f"{shown} earlier verdicts from {self.db_path.name}" if shown else "")
        session, index = job.token
        item = session.items[index]
        item.saving = False
        if job.error is not None:
            item.unsaved = job.error
            text = f"verdict NOT saved for {item.path.name}: {job.error}"
            return Event("verdict_error", text, data=index, note=text)
        row = job.result
        report.apply_row(item, row)
        item.unsaved = ""
        text = f"inspection #{row.id} {row.verdict}: {row.verdict_label} saved in {self.db_path}"
        return Event("verdict", text, data=index)

    def export(self, path: str | Path) -> Path:
        """Write the batch CSV to ``path`` and the summary beside it; returns the summary's path."""
        described = self.model.describe() if self.model else ""
        validated = self.model.validated_threshold if self.model else None
        return report.export(self.session, path, model=described, validated_threshold=validated)

    def save_settings(self, *, geometry: str | None = None) -> None:
        """Remember the model, folder, log, this model's operating point, geometry and overrides; nothing after
        :meth:`reset_settings` until the operator opens or changes something."""
        if self._forgetting:
            return
        folder = self.source if self.source is not None and self.source.is_dir() else None
        remembered = self.settings
        if self.model is not None:
            s = self.session
            point = None if not self.off_model_point else (s.threshold, s.positive_class)
            remembered = remembered.with_operating_point(_model_key(self.model), point)
        self.settings = remembered.replace(
            last_model=str(self.model.path) if self.model else self.settings.last_model,
            last_folder=str(folder) if folder else self.settings.last_folder,
            last_db=str(self.db_path) if isinstance(self.db_path, Path) else self.settings.last_db,
            threshold=None,  # kept per model in ``thresholds`` now
            positive_class=None,
            geometry=geometry or self.settings.geometry,
            advanced=self.advanced.to_dict() if self.advanced and not self.advanced.empty else None,
        )
        settings.save_settings(self.settings, self.settings_file)

    def reset_settings(self) -> None:
        """Remove the settings file; the current model and batch stay open, and closing the window does not
        write them back (opening or changing something does)."""
        self.settings = settings.reset_settings(self.settings_file)
        self._forgetting = True

    def close(self) -> None:
        self.worker.cancel()
        self.writer.close()


def _choose_db(db: str | Path | None, remembered: settings.Settings) -> tuple[Location, str, str]:
    """The log to open (a SQLite file or a PostgreSQL URL), where that choice came from, and a note when the
    remembered log is gone. Only a file is remembered: a database URL may carry a password."""
    if db:
        return parse_location(db), "given with --db", ""
    if remembered.last_db and Path(remembered.last_db).is_file():
        return Path(remembered.last_db), "the last one used, from the settings", ""
    default = settings.default_db_path()
    if remembered.last_db:
        note = f"the log the settings name, {remembered.last_db}, no longer exists; writing to {default}"
        return default, "default: the remembered one is gone", note
    return default, "default", ""


def _model_key(model: LoadedModel) -> str:
    """Whose operating point the settings keep: the model's content hash (its path for a model without one)."""
    return model.predictor.model_id or str(model.path)


def _existing(path: str | None) -> str | None:
    return path if path and Path(path).exists() else None


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment (containers, services)
        return ""
