"""What the PLC sinks share: the handshake, and a server on its own thread with its own event loop.

:class:`~defectlens.line.opcua.OpcUaSink` and :class:`~defectlens.line.modbus.ModbusSink` differ only in
the protocol their ``_serve`` coroutine speaks; opening (with the bound port read back and a busy port
named), publishing into the :class:`~defectlens.line.handshake.Handshake`, and stopping live here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from defectlens.line.base import LineError, Result, StationControl
from defectlens.line.handshake import Handshake


class PlcServer:
    """A PLC-facing server sink; subclasses set :attr:`protocol` and implement :meth:`_serve`.

    ``_serve`` runs on the server's own loop: it sets ``_loop`` and ``_stop``, starts listening, reads the bound
    port back into :attr:`port` and sets ``_started`` (or stores the failure in ``_error`` and sets it), then
    serves until ``_stop`` is set.
    """

    protocol = "PLC"

    def __init__(self, *, host: str, port: int, endpoint: str, queue_size: int, wait_for_ack: bool,
                 start_timeout: float) -> None:  # fmt: skip
        self.host, self.port, self.endpoint = host, port, endpoint
        self.handshake = Handshake(queue_size=queue_size, wait_for_ack=wait_for_ack)
        self.start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def open(self, control: StationControl) -> None:
        """Listen, on a thread with its own event loop; :class:`LineError` naming the endpoint when it cannot."""
        self.handshake.attach(control)
        self._thread = threading.Thread(target=self._run, name=f"defectlens-{self.endpoint}", daemon=True)
        self._thread.start()
        if not self._started.wait(self.start_timeout):
            raise LineError(
                f"{self.endpoint}: the {self.protocol} server did not start within {self.start_timeout:g} s"
            )
        if self._error is not None:
            self._thread.join()
            raise LineError(
                f"{self.endpoint}: cannot listen on {self.host}:{self.port} ({self._error}); the port is in use or "
                "the address is not one of this machine's: choose another port or host"
            ) from self._error

    def publish(self, result: Result) -> None:
        """Present or queue ``result`` for the PLC (never blocks on the network)."""
        self.handshake.publish(result)

    def set_status(self, online: bool, alarm: str = "") -> None:
        self.handshake.set_status(online, alarm)

    def close(self) -> None:
        """Stop the server (results the PLC never acknowledged are in the inspection log)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to stop
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout=self.start_timeout)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        raise NotImplementedError
