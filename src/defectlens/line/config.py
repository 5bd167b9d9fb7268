"""The station file, the command line's short forms, and building a running station from either.

A station file (YAML; every key is checked, unknown keys refused, relative paths taken from the file's folder)::

    station: line-1                 # the log's station column, the sinks' topic and node names
    model: casting.dlens
    gate: refuse                    # refuse | warn | off
    log: inspections.sqlite         # or postgresql://USER:PASSWORD@HOST:PORT/DB: one log for many stations
    queue: {size: 8, policy: hold}  # hold: stop reading the source while full; drop: log the frame as dropped
    alarm_after: 3                  # frames in a row without a decision that raise the station alarm
    good: [ok_front]                # multi-class models: the classes a PLC may take as OK
    source: {type: folder, path: in/, after: move}
    sinks:
      - {type: sort, path: sorted/}
      - {type: mqtt, host: broker, port: 1883, topic: plant/line-1}
    metrics: {port: 9108}           # 0: the system picks a port
    store_images: images/           # keep each judged frame's image (training data: data import --from-log)
    drift: {window: 100, psi_alarm: 1.0, share_alpha: 1.0e-6, enabled: true}

Sources and sinks are found through :data:`SOURCE_TYPES` and :data:`SINK_TYPES` (``module:Class``, imported only
when a station uses them, so a protocol library is needed only by the station that speaks it). Each class has
``from_config(options, *, station, base)`` and raises :class:`~defectlens.line.base.LineError` naming a bad option.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GATE_MODES
from defectlens.inference.drift import DriftConfig
from defectlens.inference.predictor import Predictor
from defectlens.inspections.engine import DatabaseURL, Location, parse_location
from defectlens.inspections.images import ImageStore
from defectlens.inspections.store import InspectionLog
from defectlens.line.base import LineError, Sink, Source
from defectlens.line.metrics import LineMetrics
from defectlens.line.station import POLICIES, Policy, Station, StationEvent, good_classes

SOURCE_TYPES = {
    "folder": "defectlens.line.folder:FolderSource",
    "video": "defectlens.line.video:VideoSource",
    "genicam": "defectlens.line.genicam:GenICamSource",
}
SINK_TYPES = {
    "sort": "defectlens.line.sort:SortSink",
    "mqtt": "defectlens.line.mqtt:MqttSink",
    "opcua": "defectlens.line.opcua:OpcUaSink",
    "modbus": "defectlens.line.modbus:ModbusSink",
}
#: The extra that installs each protocol library a source or sink imports.
_EXTRA_OF = {"harvesters": "camera", "genicam": "camera"}
_KEYS = (
    "station", "model", "gate", "log", "queue", "alarm_after", "good", "source", "sinks", "metrics", "store_images",
    "drift",
)  # fmt: skip
#: The ``drift:`` section's keys: the DriftConfig fields a line tunes, and ``enabled`` (false: no watch).
DRIFT_KEYS = ("window", "psi_alarm", "share_alpha", "enabled")
#: ``--sink KIND://HOST:PORT`` short forms and their default ports.
URL_SINKS = {"mqtt": 1883, "opcua": 4840, "modbus": 502}


@dataclass(frozen=True)
class StationConfig:
    """One station, as the station file or the command line gave it (paths resolved)."""

    station: str
    model: Path
    source: Mapping[str, Any]
    sinks: tuple[Mapping[str, Any], ...] = ()
    gate: str = "refuse"
    log: Location = Path("inspections.sqlite")
    queue_size: int = 8
    policy: Policy = "hold"
    alarm_after: int = 3
    good: tuple[str, ...] | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    store_images: Path | None = None  # where each judged frame's image is kept (None: only its hash is logged)
    drift: DriftConfig = field(default_factory=DriftConfig)
    drift_watch: bool = True  # False: the drift watch is off (drift: {enabled: false})
    base: Path = field(default_factory=Path.cwd)  # where relative paths of sources and sinks start
    origin: str = "command line"  # the station file, for messages


# -- reading a station file ------------------------------------------------------------------------------------------


def load_station_file(path: str | Path) -> StationConfig:
    """Read and check a station file.

    Raises:
        LineError: naming the file, the key and the value that is wrong.
    """
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LineError(f"{p}: cannot read the station file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise LineError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise LineError(f"{p}: a station file is a mapping of keys ({', '.join(_KEYS)}), got {type(data).__name__}")
    return _config(data, origin=str(p), base=p.resolve().parent)


def _config(data: dict[str, Any], *, origin: str, base: Path) -> StationConfig:
    def bad(key: str, problem: str, value: Any) -> LineError:
        return LineError(f"{origin}: {key}: {problem}, got {value!r:.80}")

    unknown = sorted(set(data) - set(_KEYS), key=str)
    if unknown:
        raise bad(str(unknown[0]), f"unknown key (keys: {', '.join(_KEYS)})", data[unknown[0]])
    for key in ("station", "model"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise bad(key, "required, a non-empty text", data.get(key))
    if data.get("gate", "refuse") not in GATE_MODES:
        raise bad("gate", f"must be one of {', '.join(GATE_MODES)}", data["gate"])
    if not isinstance(data.get("log", ""), str):
        raise bad("log", "must be a path or a database URL", data["log"])
    try:
        log = parse_location(data.get("log", "inspections.sqlite"))
    except DefectlensError as exc:
        raise LineError(f"{origin}: log: {exc}") from None
    size, policy = _queue(data.get("queue", {}), bad)
    alarm_after = data.get("alarm_after", 3)
    if not _is_int(alarm_after) or alarm_after < 1:
        raise bad("alarm_after", "must be a whole number of frames, at least 1", alarm_after)
    good = data.get("good")
    if good is not None and (not isinstance(good, list) or not good or not all(isinstance(g, str) for g in good)):
        raise bad("good", "must be a list of class names", good)
    source = _typed(data.get("source"), "source", SOURCE_TYPES, bad)
    sinks = data.get("sinks", [])
    if not isinstance(sinks, list):
        raise bad("sinks", "must be a list of sinks, each a mapping with a type", sinks)
    port, host = _metrics(data.get("metrics"), bad)
    store = data.get("store_images")
    if store is not None and (not isinstance(store, str) or not store.strip()):
        raise bad("store_images", "must be a folder path", store)
    drift, watch_drift = _drift(data.get("drift", {}), bad)
    return StationConfig(
        station=data["station"].strip(),
        model=base / Path(data["model"]).expanduser(),
        source=source,
        sinks=tuple(_typed(s, f"sinks[{i}]", SINK_TYPES, bad) for i, s in enumerate(sinks)),
        gate=data.get("gate", "refuse"),
        log=base / log if isinstance(log, Path) else log,
        queue_size=size,
        policy=policy,
        alarm_after=alarm_after,
        good=None if good is None else tuple(good),
        metrics_port=port,
        metrics_host=host,
        store_images=None if store is None else base / Path(store).expanduser(),
        drift=drift,
        drift_watch=watch_drift,
        base=base,
        origin=origin,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _queue(value: Any, bad: Callable[[str, str, Any], LineError]) -> tuple[int, Policy]:
    if not isinstance(value, dict):
        raise bad("queue", "must be a mapping {size: N, policy: hold|drop}", value)
    for key in sorted(set(value) - {"size", "policy"}, key=str):
        raise bad(f"queue.{key}", "unknown key (keys: size, policy)", value[key])
    size = value.get("size", 8)
    if not _is_int(size) or size < 1:
        raise bad("queue.size", "must be a whole number of frames, at least 1", size)
    policy = value.get("policy", "hold")
    if policy not in POLICIES:
        raise bad("queue.policy", f"must be one of {', '.join(POLICIES)}", policy)
    return size, cast(Policy, policy)


def _typed(value: Any, key: str, registry: Mapping[str, str], bad: Callable[[str, str, Any], LineError]) -> dict:
    if not isinstance(value, dict):
        raise bad(key, "must be a mapping with a 'type'", value)
    if value.get("type") not in registry:
        raise bad(f"{key}.type", f"must be one of {', '.join(registry)}", value.get("type"))
    return dict(value)


def _metrics(value: Any, bad: Callable[[str, str, Any], LineError]) -> tuple[int | None, str]:
    if value is None:
        return None, "0.0.0.0"
    if not isinstance(value, dict):
        raise bad("metrics", "must be a mapping {port: N}", value)
    for key in sorted(set(value) - {"port", "host"}, key=str):
        raise bad(f"metrics.{key}", "unknown key (keys: port, host)", value[key])
    port = value.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise bad("metrics.port", "must be a port number 0-65535 (0: the system picks one)", port)
    host = value.get("host", "0.0.0.0")
    if not isinstance(host, str) or not host:
        raise bad("metrics.host", "must be an interface address", host)
    return port, host


def _drift(value: Any, bad: Callable[[str, str, Any], LineError]) -> tuple[DriftConfig, bool]:
    """The ``drift:`` section: the watch's settings (checked by :class:`DriftConfig`) and whether it runs."""
    if not isinstance(value, dict):
        raise bad("drift", "must be a mapping {window: N, psi_alarm: X, share_alpha: P, enabled: true|false}", value)
    for key in sorted(set(value) - set(DRIFT_KEYS), key=str):
        raise bad(f"drift.{key}", f"unknown key (keys: {', '.join(DRIFT_KEYS)})", value[key])
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise bad("drift.enabled", "must be true or false", enabled)
    given = {k: _number(k, v, bad) for k, v in value.items() if k != "enabled"}
    for key, number in given.items():
        try:
            drift_config({key: number})
        except DefectlensError as exc:
            raise bad(f"drift.{key}", str(exc), number) from None
    return drift_config(given), enabled


def _number(key: str, value: Any, bad: Callable[[str, str, Any], LineError]) -> int | float:
    """A ``drift:`` value: the window a whole number, the others any number (YAML reads ``1e-6``, without a dot,
    as text: taken as the number it spells)."""
    if key == "window":
        if not _is_int(value):
            raise bad("drift.window", "must be a whole number", value)
        return int(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"drift.{key}", "must be a number", value)
    return value


def drift_config(given: Mapping[str, Any]) -> DriftConfig:
    """:class:`DriftConfig` with ``given`` fields; a window shorter than the default ``min_verdicts`` checks
    agreement from as many verdicts as it holds (instead of refusing a setting nobody gave).

    Raises:
        DefectlensError: DriftConfig's message for a value out of range.
    """
    settings = dict(given)
    window = settings.get("window")
    if isinstance(window, int) and "min_verdicts" not in settings:
        settings["min_verdicts"] = max(1, min(DriftConfig.min_verdicts, window))
    return DriftConfig(**settings)


# -- the command line's short forms ---------------------------------------------------------------------------------


def parse_source(text: str) -> dict[str, Any]:
    """``folder:/path`` or ``video:FILE|URL|DEVICE`` -> the ``source:`` mapping of a station file."""
    kind, _, value = text.partition(":")
    if kind == "folder" and value:
        return {"type": "folder", "path": value}
    if kind == "video" and value:
        if value.isdigit():
            return {"type": "video", "device": int(value)}
        return {"type": "video", ("url" if "://" in value else "path"): value}
    raise LineError(f"--source {text!r}: give folder:PATH or video:FILE (other sources: a station file, --config)")


def parse_sink(text: str) -> dict[str, Any]:
    """``sort:/out``, ``mqtt://host:port/topic``, ``opcua://host:port`` or ``modbus://host:port`` -> a sink mapping."""
    kind, _, value = text.partition(":")
    if kind == "sort" and value and not value.startswith("//"):
        return {"type": "sort", "path": value}
    if kind in URL_SINKS and value.startswith("//"):
        url = urlsplit(text)
        try:
            port = URL_SINKS[kind] if url.port is None else url.port  # 0: the system picks one
        except ValueError:
            raise LineError(f"--sink {text!r}: the port is not a number 0-65535") from None
        if not url.hostname:
            raise LineError(f"--sink {text!r}: name the host, e.g. {kind}://127.0.0.1:{URL_SINKS[kind]}")
        path = url.path.strip("/")
        if kind == "mqtt":
            return {"type": kind, "host": url.hostname, "port": port, **({"topic_prefix": path} if path else {})}
        if kind == "opcua":
            return {"type": kind, "endpoint": f"opc.tcp://{url.hostname}:{port}/{path or 'defectlens'}"}
        return {"type": kind, "host": url.hostname, "port": port}
    forms = "sort:PATH, mqtt://HOST:PORT/TOPIC, opcua://HOST:PORT, modbus://HOST:PORT"
    raise LineError(f"--sink {text!r}: give one of {forms}")


def config_from_args(
    *,
    model: str,
    source: str,
    sinks: list[str],
    station: str = "line",
    log: str | None = None,
    gate: str = "refuse",
    queue_size: int = 8,
    policy: str = "hold",
    metrics_port: int | None = None,
    store_images: str | Path | None = None,
) -> StationConfig:
    """A station from the command line's ``--model``, ``--source``, ``--sink``... (paths from the current folder)."""
    if gate not in GATE_MODES:
        raise LineError(f"--gate {gate!r}: choose one of {', '.join(GATE_MODES)}")
    if policy not in POLICIES or queue_size < 1:
        raise LineError(f"--queue {queue_size} --policy {policy!r}: a size of at least 1, policy hold or drop")
    return StationConfig(
        queue_size=queue_size,
        policy=cast(Policy, policy),
        metrics_port=metrics_port,
        station=station,
        model=Path(model).expanduser(),
        source=parse_source(source),
        sinks=tuple(parse_sink(s) for s in sinks),
        gate=gate,
        log=parse_location(log or "inspections.sqlite"),
        store_images=None if store_images is None else Path(store_images).expanduser(),
    )


# -- building ----------------------------------------------------------------------------------------------------------


def _factory(kind: str, registry: Mapping[str, str], what: str) -> Any:
    module_name, _, attr = registry[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise LineError(f"the {kind} {what} is not part of this defectlens ({module_name} is missing)") from None
        top = (exc.name or "").split(".")[0]
        extra = _EXTRA_OF.get(top, "line")
        raise LineError(f"the {kind} {what} needs the {top!r} package: pip install 'defectlens[{extra}]'") from None
    return getattr(module, attr)


def _options(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A source's or sink's own options: the mapping without ``type`` (the registry's key)."""
    return {k: v for k, v in mapping.items() if k != "type"}


def create_source(config: StationConfig) -> Source:
    """The configured source (not yet open).

    Raises:
        LineError: naming the station file and the bad option.
    """
    kind = str(config.source["type"])
    cls = _factory(kind, SOURCE_TYPES, "source")
    try:
        return cast(Source, cls.from_config(_options(config.source), station=config.station, base=config.base))
    except LineError as exc:
        raise LineError(f"{config.origin}: source: {exc}") from None


def create_sinks(config: StationConfig) -> list[Sink]:
    """The configured sinks, in order (not yet open)."""
    sinks = []
    for i, options in enumerate(config.sinks):
        cls = _factory(str(options["type"]), SINK_TYPES, "sink")
        try:
            sinks.append(cast(Sink, cls.from_config(_options(options), station=config.station, base=config.base)))
        except LineError as exc:
            raise LineError(f"{config.origin}: sinks[{i}]: {exc}") from None
    return sinks


@dataclass
class StationRun:
    """A station and what it owns: the log, the metrics endpoint. ``with`` starts it and closes it all."""

    station: Station
    log: InspectionLog
    metrics: LineMetrics | None
    metrics_port: int | None
    metrics_host: str = "0.0.0.0"

    def __enter__(self) -> StationRun:
        try:
            if self.metrics is not None and self.metrics_port is not None:
                self.metrics_port = self.metrics.serve(self.metrics_port, self.metrics_host)
            self.station.start()
        except BaseException:
            self._close_owned()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.station.close()
        finally:
            self._close_owned()

    def _close_owned(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        self.log.close()


def open_station(config: StationConfig, *, on_event: Callable[[StationEvent], None] | None = None) -> StationRun:
    """Load the model, build the source and sinks and open the log: a :class:`StationRun` to start with ``with``.

    Raises:
        DefectlensError: for a model that cannot be loaded; LineError for a bad source, sink or ``good:``.
    """
    predictor = Predictor.load(config.model, gate=config.gate)
    good_classes(predictor.spec, config.good)  # refuse a model with no good class before anything opens
    source, sinks = create_source(config), create_sinks(config)
    store = open_image_store(config)
    log = InspectionLog(config.log)
    metrics = LineMetrics(config.station) if config.metrics_port is not None else None
    station = Station(
        source=source, predictor=predictor, log=log, sinks=sinks, name=config.station, queue_size=config.queue_size,
        policy=config.policy, alarm_after=config.alarm_after, good=config.good, metrics=metrics, on_event=on_event,
        store=store, drift=config.drift, watch_drift=config.drift_watch,
    )  # fmt: skip
    return StationRun(station, log, metrics, config.metrics_port, config.metrics_host)


def open_image_store(config: StationConfig) -> ImageStore | None:
    """The image store ``store_images`` names (its folder created), or None without one.

    Raises:
        LineError: when the folder cannot be created or written.
    """
    if config.store_images is None:
        return None
    folder = config.store_images
    try:
        store = ImageStore(folder)
    except OSError as exc:
        raise LineError(
            f"{config.origin}: store_images {folder}: cannot create the folder ({exc.strerror or exc})"
        ) from None
    if not os.access(folder, os.W_OK):
        raise LineError(f"{config.origin}: store_images {folder}: the folder is not writable")
    return store


class _NoTrigger:
    """The control a sink gets during ``--check``: the station never takes a trigger."""

    ready = False

    def trigger(self, part_id: str | None = None) -> bool:
        return False


def check_station(config: StationConfig) -> list[str]:
    """Load the model and open and close the source and every sink, inspecting nothing; one line per part checked.

    Raises:
        DefectlensError / LineError: naming the first part that is not usable.
    """
    predictor = Predictor.load(config.model, gate=config.gate)
    good = good_classes(predictor.spec, config.good)
    lines = [f"model {config.model}: classes {', '.join(predictor.spec.class_names)}; OK = {', '.join(sorted(good))}"]
    if isinstance(config.log, DatabaseURL) or config.log.exists():
        InspectionLog(config.log).close()
    elif not os.access(_existing_parent(config.log.parent), os.W_OK):
        raise LineError(f"log {config.log}: cannot create it here (folder not writable)")
    lines.append(f"log {config.log}: usable")
    if open_image_store(config) is not None:
        lines.append(f"images {config.store_images}: writable")
    source = create_source(config)
    source.open()
    source.close()
    lines.append(f"source {source.endpoint}: opened and closed")
    for sink in create_sinks(config):
        check = getattr(sink, "check", None)
        if callable(check):  # a sink that keeps working when its endpoint is down (MQTT) still reaches it here
            check()
            lines.append(f"sink {sink.endpoint}: reached")
            continue
        sink.open(_NoTrigger())
        sink.close()
        lines.append(f"sink {sink.endpoint}: opened and closed")
    if config.metrics_port is not None:
        metrics = LineMetrics(config.station)
        port = metrics.serve(config.metrics_port, config.metrics_host)
        metrics.close()
        lines.append(f"metrics: port {port} can be bound")
    return lines


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
