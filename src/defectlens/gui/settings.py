"""The inspector's settings file: last model, folder and log, each model's threshold, geometry, overrides.

Settings are JSON in ``platformdirs.user_config_dir("defectlens")/inspector.json`` (the folder can be
moved with ``DEFECTLENS_CONFIG_DIR``, which tests use). A file that cannot be parsed is moved aside
(``inspector.json.corrupt-<time>``) and the defaults are used, with a warning for the window's status
line: a damaged settings file must never keep the inspector from starting.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: Environment variable that moves the settings folder (and the default inspection log) elsewhere.
CONFIG_ENV = "DEFECTLENS_CONFIG_DIR"
SETTINGS_FILE = "inspector.json"
DB_FILE = "inspections.sqlite"


@dataclass(frozen=True)
class Settings:
    """What the inspector remembers between sessions.

    Attributes:
        last_model: bundle, run folder or ONNX file loaded last.
        last_folder: image folder opened last.
        last_db: inspection log used last (the inspector opens it again when ``--db`` is not given).
        threshold: operating threshold chosen for ``last_model`` by a version that kept only one (read when
            ``thresholds`` has no entry for that model; never written now).
        positive_class: the class ``threshold`` applied to (same history).
        geometry: Tk window geometry (``"1280x900+10+10"``).
        advanced: the advanced panel's overrides for ``last_model`` (see :class:`~defectlens.gui.model.Advanced`).
        thresholds: per model id, the operating point chosen away from the model's validated one:
            ``{"threshold": 0.62, "positive_class": "defect"}`` (a model back at its own has no entry).
    """

    last_model: str | None = None
    last_folder: str | None = None
    last_db: str | None = None
    threshold: float | None = None
    positive_class: str | None = None
    geometry: str | None = None
    advanced: dict[str, Any] | None = field(default=None)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> tuple[Settings, list[str]]:
        """Settings from a parsed file, and a note per value of the wrong type (that value is dropped)."""
        kinds: dict[str, tuple[type, ...]] = {
            "threshold": (int, float),
            "advanced": (dict,),
            "thresholds": (dict,),
        }
        kw: dict[str, Any] = {}
        notes = []
        for f in fields(cls):
            if f.name not in data or data[f.name] is None:
                continue
            value = data[f.name]
            if not isinstance(value, kinds.get(f.name, (str,))) or isinstance(value, bool):
                notes.append(f"{f.name}={value!r} ignored (wrong type)")
                continue
            kw[f.name] = value
        if "threshold" in kw:
            kw["threshold"] = float(kw["threshold"])
        if "thresholds" in kw:
            kw["thresholds"] = _operating_points(kw["thresholds"], notes)
        return cls(**kw), notes

    def operating_point(self, model_key: str) -> tuple[float | None, str | None] | None:
        """The (threshold, positive class) remembered for model ``model_key``, None when there is none."""
        entry = self.thresholds.get(model_key)
        if entry is None:
            return None
        return entry.get("threshold"), entry.get("positive_class")

    def with_operating_point(self, model_key: str, point: tuple[float | None, str | None] | None) -> Settings:
        """These settings with model ``model_key``'s operating point set (None: forgotten)."""
        thresholds = {k: v for k, v in self.thresholds.items() if k != model_key}
        if point is not None:
            thresholds[model_key] = {"threshold": point[0], "positive_class": point[1]}
        return replace(self, thresholds=thresholds)


def _operating_points(data: dict[str, Any], notes: list[str]) -> dict[str, dict[str, Any]]:
    """The well-formed entries of ``thresholds`` (a note for each one dropped)."""
    out = {}
    for key, entry in data.items():
        threshold = entry.get("threshold") if isinstance(entry, dict) else "?"
        positive = entry.get("positive_class") if isinstance(entry, dict) else None
        number = isinstance(threshold, int | float) and not isinstance(threshold, bool) and 0 <= threshold <= 1
        if (threshold is not None and not number) or not isinstance(positive, str | None):
            notes.append(f"thresholds[{key!r}]={entry!r} ignored (wrong type)")
            continue
        out[str(key)] = {"threshold": None if threshold is None else float(threshold), "positive_class": positive}
    return out


def config_dir() -> Path:
    """The settings folder: ``$DEFECTLENS_CONFIG_DIR`` when set, else the platform's user config folder."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("defectlens", appauthor=False))


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def default_db_path() -> Path:
    """Where the inspection log lives when ``--db`` is not given: the user data folder (or the
    ``$DEFECTLENS_CONFIG_DIR`` folder when that is set, so tests stay inside their temporary folder)."""
    if os.environ.get(CONFIG_ENV):
        return config_dir() / DB_FILE
    import platformdirs

    return Path(platformdirs.user_data_dir("defectlens", appauthor=False)) / DB_FILE


def load_settings(path: Path | None = None) -> tuple[Settings, str | None]:
    """Read the settings; returns ``(settings, warning)`` where ``warning`` is None when all went well.

    A missing file gives the defaults silently; an unreadable or corrupt one is renamed aside and
    the defaults are used, with a warning that names where the old file went.
    """
    path = path or settings_path()
    if not path.is_file():
        return Settings(), None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, found {type(data).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.replace(aside)
            where = f"moved to {aside}"
        except OSError as move_exc:
            where = f"could not be moved aside ({move_exc})"
        return Settings(), f"settings file {path} is corrupt ({exc}); {where}; using defaults"
    settings, notes = Settings.from_dict(data)
    return settings, (f"settings file {path}: {'; '.join(notes)}" if notes else None)


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings atomically (a crash mid-write never leaves half a file); returns the path."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def reset_settings(path: Path | None = None) -> Settings:
    """Forget everything: remove the settings file and return the defaults."""
    path = path or settings_path()
    path.unlink(missing_ok=True)
    return Settings()
