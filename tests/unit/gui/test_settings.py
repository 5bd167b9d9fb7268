"""The inspector's settings file: round trip, a corrupt file set aside, wrong types dropped, reset."""

from __future__ import annotations

import json

from defectlens.gui import settings
from defectlens.gui.settings import Settings


def test_settings_live_in_the_overridden_config_folder(_private_config):
    assert settings.config_dir() == _private_config
    assert settings.settings_path() == _private_config / "inspector.json"
    assert settings.default_db_path() == _private_config / "inspections.sqlite"


def test_round_trip():
    saved = Settings(
        last_model="/models/casting.dlens",
        last_folder="/parts",
        threshold=0.42,
        positive_class="defect",
        geometry="1280x900+0+0",
        advanced={"class_names": ["ok", "defect"], "swap_classes": True},
    )
    path = settings.save_settings(saved)
    assert path == settings.settings_path()
    loaded, warning = settings.load_settings()
    assert warning is None
    assert loaded == saved


def test_missing_file_gives_defaults_silently():
    assert settings.load_settings() == (Settings(), None)


def test_corrupt_file_is_moved_aside_with_a_warning(_private_config):
    _private_config.mkdir(parents=True)
    path = settings.settings_path()
    path.write_text("{ not json", encoding="utf-8")
    loaded, warning = settings.load_settings()
    assert loaded == Settings()
    assert warning is not None and "corrupt" in warning and str(path) in warning
    assert not path.exists()
    aside = list(_private_config.glob("inspector.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == "{ not json"
    assert str(aside[0]) in warning


def test_a_json_list_is_corrupt_too(_private_config):
    _private_config.mkdir(parents=True)
    settings.settings_path().write_text("[1, 2]", encoding="utf-8")
    loaded, warning = settings.load_settings()
    assert loaded == Settings() and "expected a JSON object" in (warning or "")


def test_values_of_the_wrong_type_are_dropped_with_a_note(_private_config):
    _private_config.mkdir(parents=True)
    data = {"threshold": "high", "last_model": "/m.dlens", "advanced": [1], "positive_class": True, "unknown": 1}
    settings.settings_path().write_text(json.dumps(data), encoding="utf-8")
    loaded, warning = settings.load_settings()
    assert loaded == Settings(last_model="/m.dlens")
    assert warning is not None
    for name in ("threshold", "advanced", "positive_class"):
        assert name in warning


def test_reset_removes_the_file():
    settings.save_settings(Settings(threshold=0.3))
    assert settings.reset_settings() == Settings()
    assert not settings.settings_path().exists()
    assert settings.reset_settings() == Settings()  # resetting twice is fine
