"""A real Mosquitto broker on 127.0.0.1 and a paho subscriber playing the MES, for the MQTT tests.

Mosquitto cannot report the port it bound, so :class:`Broker` picks a free one (bind to port 0, release it)
just before starting, and picks again when another process took it in between. Not a conftest: the
station's tests may have their own; a test module imports what it uses from here.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # paho only where a Mes is made: the video and camera tests use wait_until alone
    import paho.mqtt.client as mqtt


def find_mosquitto() -> str | None:
    """The broker binary (Debian puts it in /usr/sbin, outside a plain user's PATH)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], *, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds (a deadline, not a
    measurement: the tests assert what happened, never how fast)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class Broker:
    """``mosquitto`` on 127.0.0.1: anonymous, persistence off unless asked (a restart then keeps sessions)."""

    def __init__(self, folder: Path, *, persistence: bool = False) -> None:
        self.folder, self.persistence = folder, persistence
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start on a fresh free port, or on the same port after :meth:`stop`."""
        fixed = self.port is not None
        for _ in range(5):
            port = self.port if fixed else free_port()
            assert port is not None
            if self._launch(port):
                self.port = port
                return
        raise RuntimeError(f"mosquitto did not start; see {self.folder / 'mosquitto.log'}")

    def _launch(self, port: int) -> bool:
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "user root"]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/"]
        else:
            lines += ["persistence false"]
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        with (self.folder / "mosquitto.log").open("ab") as logfile:
            self.proc = subprocess.Popen([find_mosquitto() or "mosquitto", "-c", str(conf)], stderr=logfile)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # the port was taken between free_port() and the bind: try another
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its sessions when persistence is on) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Mes:
    """A paho subscriber on ``topic`` (QoS 1) that keeps every message it gets, in arrival order."""

    def __init__(self, port: int, topic: str = "#", *, client_id: str = "", clean_session: bool = True) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, what=f"the MES subscribing to {topic}", timeout=30)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def payloads(self, suffix: str) -> list[dict[str, Any]]:
        """The JSON payloads of the messages on topics ending with ``suffix``."""
        with self._lock:
            return [json.loads(m.payload) for m in self.messages if m.topic.endswith(suffix)]

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
