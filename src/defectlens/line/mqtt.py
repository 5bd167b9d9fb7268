"""The MES sink: every result as one JSON message on MQTT (paho-mqtt 2.x), the station's status retained.

Topics, under a configurable prefix (``defectlens`` by default):

- ``<prefix>/<station>/result``: one message per result, QoS 1, the payload :meth:`Result.to_message`
  (inspection id, status, decision, scores, model id, file, part id, capture and decision times).
- ``<prefix>/<station>/event``: the station's events a MES acts on (``drift_alarm``, ``drift_cleared``,
  ``model_swapped``, ``model_swap_failed``), QoS 1, ``{"station", "kind", "text", "utc"}``, through the
  same outbox as the results.
- ``<prefix>/<station>/status``: ``{"station", "status": "online"|"offline", "alarm", "utc"}``, QoS 1,
  retained; the broker publishes the same with ``"offline"`` as the connection's last will, so a station
  that crashed or lost its network reads offline.

Nothing is lost while the broker is down. :meth:`MqttSink.publish` appends the message to a disk outbox
(SQLite, WAL, ``synchronous=FULL``: committed before it returns) and returns at once; a sender thread
hands the outbox to paho in order and deletes a message only when its PUBACK came back. paho keeps what
it was handed and resends it, in order, after each reconnect; the outbox covers a crash: on start its
leftovers are sent first, in order. Delivery is at-least-once: a message whose PUBACK was lost with the
process is sent again, and carries its inspection id so the MES can drop the repeat.

A broker that cannot be reached at start is an error (:class:`LineError` naming ``host:port``) only when
the station file says ``required: true`` or ``defectlens line --check`` asks (:meth:`MqttSink.check`).
Otherwise the station starts, warns once and queues: a line keeps inspecting while the MES is down, and
the results follow when it returns.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from defectlens.inspections.store import utc_now
from defectlens.line.base import LineError, Result, StationControl

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

#: Options a station file's ``mqtt`` sink accepts, with their defaults (``outbox`` and ``client_id``
#: default to names built from the station).
OPTIONS: dict[str, Any] = {
    "host": "localhost",
    "port": 1883,
    "topic_prefix": "defectlens",
    "client_id": None,
    "username": None,
    "password": None,
    "keepalive": 30,
    "required": False,
    "outbox": None,
    "drain_timeout": 10.0,
    "connect_timeout": 5.0,
    "reconnect_min": 1.0,
    "reconnect_max": 10.0,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_utc TEXT NOT NULL
)
"""


class Outbox:
    """Messages not yet acknowledged by the broker, in publish order, on disk (SQLite, WAL, fsync'd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LineError(f"MQTT outbox {path}: cannot open it ({exc}); set the sink's 'outbox' option") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed write, rolled back whole on any failure."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def append(self, topic: str, payload: bytes) -> int:
        """Store one message (committed to disk when this returns); its sequence number."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO outbox (topic, payload, created_utc) VALUES (?, ?, ?)", (topic, payload, utc_now())
            )
            return int(cur.lastrowid or 0)

    def after(self, seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` messages after ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [(int(s), str(t), bytes(p)) for s, t, p in rows]

    def delete(self, seqs: Sequence[int]) -> None:
        """Forget acknowledged messages."""
        if seqs:
            with self._transaction() as db:
                db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MqttSink:
    """Publish every result to the MES over MQTT, through a disk outbox (see the module docstring).

    Args:
        host: the broker's host name or address.
        port: its TCP port.
        station: the station's name, the topic level below the prefix.
        outbox: the SQLite file that holds messages until the broker acknowledges them.
        topic_prefix: the first topic level(s).
        client_id: the MQTT client id (unique per station on a broker).
        username: broker login, when it asks for one.
        password: its password.
        keepalive: seconds between pings; the broker publishes the last will after 1.5 times this
            without a word from a station whose connection hangs (a closed connection is at once).
        required: fail at :meth:`open` when the broker cannot be reached instead of queueing.
        drain_timeout: how long :meth:`close` waits for the outbox to empty; the rest stays on disk.
        connect_timeout: how long a required connection (and :meth:`check`) waits for the broker.
        reconnect_min: the first delay between reconnect attempts, doubled up to ``reconnect_max``.
        reconnect_max: the longest delay between reconnect attempts.
    """

    #: Messages handed to paho and not yet acknowledged, at most (its in-flight window plus a queue).
    window = 100

    def __init__(
        self,
        *,
        host: str,
        port: int,
        station: str,
        outbox: Path,
        topic_prefix: str = "defectlens",
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        required: bool = False,
        drain_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect_min: float = 1.0,
        reconnect_max: float = 10.0,
    ) -> None:
        self.host, self.port, self.station = host, int(port), station
        self.endpoint = f"mqtt://{host}:{self.port}/{topic_prefix}"
        prefix = topic_prefix.strip("/")
        self.result_topic = f"{prefix}/{station}/result"
        self.status_topic = f"{prefix}/{station}/status"
        self.event_topic = f"{prefix}/{station}/event"
        self.outbox_path = outbox
        self.client_id = client_id or f"defectlens-{station}"
        self.username, self.password = username, password
        self.keepalive, self.required = int(keepalive), required
        self.drain_timeout, self.connect_timeout = float(drain_timeout), float(connect_timeout)
        self.reconnect_min, self.reconnect_max = float(reconnect_min), float(reconnect_max)
        self._outbox: Outbox | None = None
        self._client: mqtt.Client | None = None
        self._sender: threading.Thread | None = None
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._refused = ""
        self._status: tuple[bool, str] = (True, "")

    # -- configuration -----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> MqttSink:
        """Build from a station file's ``mqtt`` sink (see :data:`OPTIONS`); relative paths from ``base``."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise LineError(f"mqtt sink: unknown option {unknown[0]!r}; known: {', '.join(OPTIONS)}")
        opts = {**OPTIONS, **options}
        for key in ("port", "keepalive", "drain_timeout", "connect_timeout", "reconnect_min", "reconnect_max"):
            value = opts[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise LineError(f"mqtt sink: option {key!r} must be a non-negative number, not {value!r}")
        if not isinstance(opts["required"], bool):
            raise LineError(f"mqtt sink: option 'required' must be true or false, not {opts['required']!r}")
        if not isinstance(opts["host"], str) or not opts["host"]:
            raise LineError(f"mqtt sink: option 'host' must be a host name, not {opts['host']!r}")
        outbox = Path(opts.pop("outbox") or f"mqtt-outbox-{station}.sqlite").expanduser()
        return cls(station=station, outbox=outbox if outbox.is_absolute() else base / outbox, **opts)

    @staticmethod
    def options_from_url(url: str) -> dict[str, Any]:
        """The options of the CLI's short form ``mqtt://HOST[:PORT][/TOPIC_PREFIX]``."""
        parts = urlsplit(url)
        try:
            port = parts.port or OPTIONS["port"]
        except ValueError as exc:
            raise LineError(f"--sink {url}: bad port ({exc}); use mqtt://HOST:PORT/TOPIC_PREFIX") from exc
        if parts.scheme != "mqtt" or not parts.hostname:
            raise LineError(f"--sink {url}: expected mqtt://HOST:PORT/TOPIC_PREFIX")
        options: dict[str, Any] = {"host": parts.hostname, "port": port}
        if parts.path.strip("/"):
            options["topic_prefix"] = parts.path.strip("/")
        return options

    # -- the Sink interface ------------------------------------------------------------------------

    def open(self, control: StationControl | None = None) -> None:
        """Open the outbox and connect; the outbox's leftovers from an earlier run go out first."""
        self._closing.clear()
        self._outbox = Outbox(self.outbox_path)
        leftovers = len(self._outbox)
        if leftovers:
            log.info("MQTT outbox %s: %d results from an earlier run are sent first", self.outbox_path, leftovers)
        self._client = self._make_client()
        try:
            self._client.connect(self.host, self.port, self.keepalive)
        except OSError as exc:
            if self.required:
                self._abandon()
                raise LineError(self._unreachable(exc)) from exc
            log.warning("%s; results are queued in %s until it returns", self._unreachable(exc), self.outbox_path)
            self._client.connect_async(self.host, self.port, self.keepalive)
        self._client.loop_start()
        if self.required and not self._wait_connected():
            self._abandon()
            raise LineError(self._unreachable(self._refused or f"no answer in {self.connect_timeout:g} s"))
        self._sender = threading.Thread(target=self._send_loop, name=f"mqtt-sender-{self.station}", daemon=True)
        self._sender.start()

    def check(self) -> None:
        """Connect once and disconnect (``defectlens line --check``); :class:`LineError` naming host:port."""
        client = self._make_client(will=False)
        answer: queue.SimpleQueue[str] = queue.SimpleQueue()  # "" accepted, else the broker's refusal
        client.on_connect = lambda c, u, f, reason, p: answer.put(f"refused: {reason}" if reason.is_failure else "")
        client.on_disconnect = None
        try:
            client.connect(self.host, self.port, self.keepalive)
        except OSError as exc:
            raise LineError(self._unreachable(exc)) from exc
        client.loop_start()
        try:
            refused = answer.get(timeout=self.connect_timeout)
        except queue.Empty:
            refused = f"no answer in {self.connect_timeout:g} s"
        finally:
            client.disconnect()
            client.loop_stop()
        if refused:
            raise LineError(self._unreachable(refused))

    def publish(self, result: Result) -> None:
        """Append the result's message to the outbox (on disk when this returns); the sender sends it."""
        if self._outbox is None or self._closing.is_set():
            raise LineError(f"MQTT sink {self.endpoint}: publish() before open() or after close()")
        payload = json.dumps(result.to_message(), separators=(",", ":")).encode()
        self._outbox.append(self.result_topic, payload)
        self._wake.set()

    def publish_event(self, kind: str, text: str) -> None:
        """Append one station event (a drift alarm, a model swap) to the outbox, like a result: never lost."""
        if self._outbox is None or self._closing.is_set():
            return  # an event outside open()..close() has no station to speak for
        payload = {"station": self.station, "kind": kind, "text": text, "utc": utc_now()}
        self._outbox.append(self.event_topic, json.dumps(payload, separators=(",", ":")).encode())
        self._wake.set()

    def set_status(self, online: bool, alarm: str = "") -> None:
        """Publish the station's status, retained; it is published again on every reconnect."""
        self._status = (online, alarm)
        if self._client is not None and self._connected.is_set():
            self._publish_status()

    def close(self) -> None:
        """Wait up to ``drain_timeout`` for the outbox to empty, publish ``offline``, disconnect.

        What the broker has not acknowledged by then stays in the outbox and is sent on the next start.
        """
        if self._client is None or self._outbox is None:
            return
        self._closing.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join()
        self._status = (False, self._status[1])
        if self._connected.is_set():
            try:
                self._publish_status().wait_for_publish(timeout=self.connect_timeout)
            except (RuntimeError, ValueError) as exc:  # the connection dropped just now: the last will says it
                log.warning("MQTT broker %s:%d: could not publish offline (%s)", self.host, self.port, exc)
        self._client.disconnect()
        self._client.loop_stop()
        left = len(self._outbox)
        if left:
            log.warning(
                "MQTT broker %s:%d did not acknowledge %d results within %g s; they stay in %s and are sent "
                "on the next start",
                self.host, self.port, left, self.drain_timeout, self.outbox_path,
            )  # fmt: skip
        self._outbox.close()
        self._client = self._outbox = None

    @property
    def pending(self) -> int:
        """Results in the outbox: not yet acknowledged by the broker."""
        return len(self._outbox) if self._outbox is not None else 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- paho ----------------------------------------------------------------------------------------

    def _make_client(self, *, will: bool = True) -> mqtt.Client:
        import paho.mqtt.client as mqtt

        # --check connects beside a running station: its own id, or the broker would drop the station.
        client_id = self.client_id if will else f"{self.client_id}-check"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if will:
            lost = self._status_payload(False, "the station lost its connection (last will)", None)
            client.will_set(self.status_topic, lost, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, round(self.reconnect_min)), max_delay=round(self.reconnect_max))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refused = f"refused: {reason}"
            log.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self._refused = ""
        self._connected.set()
        if client is self._client:
            log.info("MQTT broker %s:%d connected", self.host, self.port)
            self._publish_status()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        if client is self._client and not self._closing.is_set():
            log.warning(
                "MQTT broker %s:%d connection lost (%s); reconnecting, results queue", self.host, self.port, reason
            )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # paho calls this holding its message lock: hand the mid over, never take a lock here.
        self._acks.put(mid)
        self._wake.set()

    def _publish_status(self) -> mqtt.MQTTMessageInfo:
        assert self._client is not None
        online, alarm = self._status
        payload = self._status_payload(online, alarm, utc_now())
        return self._client.publish(self.status_topic, payload, qos=1, retain=True)

    def _status_payload(self, online: bool, alarm: str, utc: str | None) -> bytes:
        status = {"station": self.station, "status": "online" if online else "offline", "alarm": alarm, "utc": utc}
        return json.dumps(status, separators=(",", ":")).encode()

    def _wait_connected(self) -> bool:
        deadline = time.monotonic() + self.connect_timeout
        while time.monotonic() < deadline and not self._refused:
            if self._connected.wait(0.05):
                return True
        return False

    def _unreachable(self, why: object) -> str:
        return (
            f"MQTT broker {self.host}:{self.port} unreachable ({why}); start the broker or fix the mqtt sink's "
            "host/port"
        )

    def _abandon(self) -> None:
        assert self._client is not None and self._outbox is not None
        self._client.disconnect()
        self._client.loop_stop()
        self._outbox.close()
        self._client = self._outbox = None

    # -- the sender thread ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        """Hand the outbox to paho in order; delete each message once its PUBACK is in."""
        assert self._client is not None and self._outbox is not None
        in_flight: dict[int, int] = {}  # paho mid -> outbox seq
        last = 0
        deadline: float | None = None
        while True:
            self._wake.wait(0.2)
            self._wake.clear()
            self._settle(in_flight)
            if self._closing.is_set():
                deadline = deadline or time.monotonic() + self.drain_timeout
                if (not in_flight and not self._outbox.after(last, 1)) or time.monotonic() >= deadline:
                    return
            if self._connected.is_set() and len(in_flight) < self.window:
                for seq, topic, payload in self._outbox.after(last, self.window - len(in_flight)):
                    in_flight[self._client.publish(topic, payload, qos=1).mid] = seq
                    last = seq

    def _settle(self, in_flight: dict[int, int]) -> None:
        acked: list[int] = []
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            if mid in in_flight:
                acked.append(in_flight.pop(mid))
        assert self._outbox is not None
        self._outbox.delete(acked)
