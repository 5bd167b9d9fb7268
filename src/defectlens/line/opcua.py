"""The OPC UA sink: an asyncua server holding the station object a PLC reads, speaking the handshake.

The server runs on its own thread and event loop, so :meth:`OpcUaSink.publish` never waits on the network.
The address space is one object, ``Objects/<station>`` in namespace ``urn:defectlens:line``, whose
variables have string node ids ``ns=<idx>;s=<station>.<Name>`` (stable, so a PLC's tag table survives a
restart):

================ ======= ====== ==========================================================================
name             type    writer meaning
================ ======= ====== ==========================================================================
Trigger          Boolean PLC    rising edge: one acquisition, when TriggerReady
NextPartId       String  PLC    optional part id for the next Trigger ('' : the station numbers it)
ResultsAck       Boolean PLC    rising edge: ResultsValid falls; drop it to get the next result
TriggerReady     Boolean vision the station takes a trigger now
ResultsValid     Boolean vision a result is presented (written after all its fields)
OK, NG           Boolean vision good part / defect (only while ResultsValid)
NoDecision       Boolean vision no verdict: see ErrorCode (only while ResultsValid); never OK
ClassIndex       Int32   vision the decided class, -1 without a decision
ClassName        String  vision the decided class's name, '' without a decision
DefectScore      Double  vision the defect probability 0..1, -1.0 without a score
Error            Boolean vision ErrorCode is not 0
ErrorCode        Int32   vision 0 none, 1 gate refused, 2 unreadable input, 3 dropped, 4 station alarm,
                                5 no verdict (:class:`~defectlens.line.handshake.ErrorCode`)
ErrorText        String  vision the reason (the gate's, the reader's, or the alarm text)
ResultCounter    UInt32  vision +1 per presented result
InspectionId     UInt32  vision the inspection log's id (0: none)
ResultId         String  vision the same id as text (OPC 40100's ResultId)
PartId           String  vision the part id of the presented result
ResultsPending   UInt32  vision results queued behind the presented one
ResultsOverrun   UInt32  vision results refused because the queue was full
TriggersRefused  UInt32  vision triggers refused because TriggerReady was low
Online           Boolean vision the station is running
Alarm            Boolean vision the station's alarm is raised
AlarmText        String  vision the alarm ('' when none)
State            String  vision Operational, Error (alarm) or Halted (offline)
================ ======= ====== ==========================================================================

Names from OPC 40100 (OPC UA for Machine Vision): ``ResultId`` and ``PartId`` (the ResultType's fields),
and the top-level states of its VisionStateMachine (``Operational``, ``Error``, ``Halted``) in ``State``.
Simplified: 40100 models a VisionSystemType with methods (StartSingleJob, GetResultById) and a
ResultReady event; PLCs that speak OPC UA as a client (S7-1500, TwinCAT, CODESYS) read and write tags far
more easily than they call methods, so the trigger/result handshake of the PLC-facing vision systems
(Cognex, Keyence) is exposed as plain variables instead, and the object is a BaseObjectType. The endpoint
offers security mode None only: keep it on the cell network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from defectlens.line.base import LineError
from defectlens.line.handshake import HandshakeState
from defectlens.line.plcserver import PlcServer

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "opc.tcp://0.0.0.0:4840/defectlens"
NAMESPACE = "urn:defectlens:line"
OPTIONS = ("endpoint", "namespace", "queue_size", "wait_for_ack")
#: How often TriggerReady is re-read from the station when nothing else changes, seconds.
REFRESH_S = 0.05
#: The variables the PLC writes: name, type, initial value.
PLC_NODES = (("Trigger", "Boolean", False), ("NextPartId", "String", ""), ("ResultsAck", "Boolean", False))


def _result_id(s: HandshakeState) -> str:
    return str(s.inspection_id) if s.inspection_id else ""


#: The variables the station writes: name, type, the value from a handshake state.
STATION_NODES: tuple[tuple[str, str, Callable[[HandshakeState], Any]], ...] = (
    ("TriggerReady", "Boolean", lambda s: s.trigger_ready),
    ("ResultsValid", "Boolean", lambda s: s.results_valid),
    ("OK", "Boolean", lambda s: s.ok),
    ("NG", "Boolean", lambda s: s.ng),
    ("NoDecision", "Boolean", lambda s: s.no_decision),
    ("ClassIndex", "Int32", lambda s: s.class_index),
    ("ClassName", "String", lambda s: s.class_name),
    ("DefectScore", "Double", lambda s: s.defect_score),
    ("Error", "Boolean", lambda s: s.error),
    ("ErrorCode", "Int32", lambda s: s.error_code),
    ("ErrorText", "String", lambda s: s.error_text),
    ("ResultCounter", "UInt32", lambda s: s.result_counter),
    ("InspectionId", "UInt32", lambda s: s.inspection_id),
    ("ResultId", "String", _result_id),
    ("PartId", "String", lambda s: s.part_id),
    ("ResultsPending", "UInt32", lambda s: s.pending),
    ("ResultsOverrun", "UInt32", lambda s: s.overruns),
    ("TriggersRefused", "UInt32", lambda s: s.triggers_refused),
    ("Online", "Boolean", lambda s: s.online),
    ("Alarm", "Boolean", lambda s: s.alarm),
    ("AlarmText", "String", lambda s: s.alarm_text),
    ("State", "String", lambda s: s.state_name),
)


def parse_endpoint(endpoint: str) -> tuple[str, str, int, str]:
    """``opc.tcp://HOST:PORT/PATH``, ``opcua://HOST:PORT`` or ``HOST:PORT`` -> (url, host, port, path).

    Raises:
        LineError: the endpoint is not a host and port.
    """
    text = endpoint if "://" in endpoint else f"opc.tcp://{endpoint}"
    parts = urlsplit(text)
    try:
        port = parts.port if parts.port is not None else 4840
    except ValueError as exc:
        raise LineError(f"OPC UA endpoint {endpoint!r}: the port is not a number 0..65535") from exc
    if parts.scheme not in ("opc.tcp", "opcua") or not parts.hostname:
        raise LineError(f"OPC UA endpoint {endpoint!r}: write it as opc.tcp://HOST:PORT[/PATH] or opcua://HOST:PORT")
    path = parts.path if parts.path not in ("", "/") else "/defectlens"
    return f"opc.tcp://{parts.hostname}:{port}{path}", parts.hostname, port, path


class OpcUaSink(PlcServer):
    """An OPC UA server presenting each result to the PLC; see the module docstring for the nodes.

    Args:
        endpoint: where to listen, e.g. ``opc.tcp://0.0.0.0:4840/defectlens`` (port 0 picks a free one,
            read back in :attr:`endpoint_url`).
        station: the station object's name (and the node ids' prefix).
        namespace: the namespace URI of the station's nodes.
        queue_size: results that may wait for the PLC's acknowledgement (see :mod:`~defectlens.line.handshake`).
        wait_for_ack: hold TriggerReady low until the PLC has acknowledged every result.
        start_timeout: seconds to wait for the server to listen.
    """

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        station: str = "station",
        namespace: str = NAMESPACE,
        queue_size: int = 32,
        wait_for_ack: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        url, host, port, self._path = parse_endpoint(endpoint)
        super().__init__(host=host, port=port, endpoint=url, queue_size=queue_size, wait_for_ack=wait_for_ack,
                         start_timeout=start_timeout)  # fmt: skip
        self.station = station or "station"
        self.namespace = namespace
        self._wake: asyncio.Event | None = None
        self._server: Any = None
        self._nodes: dict[str, Any] = {}
        self._written: dict[str, Any] = {}
        self.handshake.add_listener(self._notify)

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> OpcUaSink:
        """Build from a station file's ``opcua`` options (:data:`OPTIONS`; see the class for their meaning)."""
        unknown = sorted(set(options) - {*OPTIONS, "type"})  # "type" selected this class
        if unknown:
            raise LineError(f"station {station!r}: unknown opcua sink option(s) {unknown}; known: {list(OPTIONS)}")
        endpoint = options.get("endpoint", DEFAULT_ENDPOINT)
        namespace = options.get("namespace", NAMESPACE)
        queue_size = options.get("queue_size", 32)
        wait_for_ack = options.get("wait_for_ack", False)
        if not isinstance(endpoint, str):
            raise LineError(f"station {station!r}: opcua sink option endpoint={endpoint!r} must be opc.tcp://HOST:PORT")
        if not isinstance(namespace, str) or not namespace:
            raise LineError(f"station {station!r}: opcua sink option namespace={namespace!r} must be a URI")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise LineError(f"station {station!r}: opcua sink option queue_size={queue_size!r} must be 1 or more")
        if not isinstance(wait_for_ack, bool):
            raise LineError(f"station {station!r}: opcua sink option wait_for_ack={wait_for_ack!r} must be true/false")
        return cls(
            endpoint=endpoint, station=station, namespace=namespace, queue_size=queue_size, wait_for_ack=wait_for_ack
        )

    @property
    def endpoint_url(self) -> str:
        """Where a PLC connects, with the bound port (after :meth:`open`)."""
        return f"opc.tcp://{self.host}:{self.port}{self._path}"

    def node_id(self, name: str) -> str:
        """The string node id of variable ``name`` without its namespace index, e.g. ``station.Trigger``."""
        return f"{self.station}.{name}"

    protocol = "OPC UA"

    def _notify(self) -> None:
        """A handshake listener, on any thread: wake the writer."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._wake = asyncio.Event(), asyncio.Event()
        try:
            self._server = await self._build_server()
            await self._server.start()
        except (OSError, RuntimeError) as exc:
            self._error = exc
            self._started.set()
            return
        self.port = self._server.bserver.port
        try:
            await self._write_state()
            self._started.set()
            await self._sync_forever()
            await self._write_state()
        finally:
            await self._server.stop()

    async def _build_server(self) -> Any:
        from asyncua import Server, ua
        from asyncua.common.callback import CallbackType

        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}{self._path}")
        server.set_server_name(f"defectlens line {self.station}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(self.namespace)
        station = await server.nodes.objects.add_object(f"ns={idx};s={self.station}", f"{idx}:{self.station}")
        variables = [(name, kind, initial) for name, kind, initial in PLC_NODES]
        variables += [(name, kind, _initial(kind)) for name, kind, _ in STATION_NODES]
        for name, kind, initial in variables:
            variant = ua.Variant(initial, getattr(ua.VariantType, kind))
            self._nodes[name] = await station.add_variable(f"ns={idx};s={self.node_id(name)}", f"{idx}:{name}", variant)
        for name, _, _ in PLC_NODES:
            await self._nodes[name].set_writable()
        server.subscribe_server_callback(CallbackType.PostWrite, self._on_write)
        return server

    async def _sync_forever(self) -> None:
        """Mirror the handshake into the nodes on every change, and every REFRESH_S for TriggerReady."""
        assert self._stop is not None and self._wake is not None
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self._write_state()
            except Exception:  # the PLC interface keeps running; a failed write is retried on the next pass
                log.exception("%s: writing the station's state to the OPC UA nodes failed", self.endpoint)
            waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=REFRESH_S, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    async def _write_state(self) -> None:
        """Write what changed; a rising ResultsValid goes last (its fields first), a falling one first."""
        from asyncua import ua

        state = self.handshake.state()
        changed = {}
        for name, kind, value_of in STATION_NODES:
            value = value_of(state)
            if self._written.get(name, _UNSET) != value:
                changed[name] = (value, kind)
        order = sorted(changed, key=lambda name: (name == "ResultsValid") == state.results_valid)
        for name in order:
            value, kind = changed[name]
            datavalue = ua.DataValue(ua.Variant(value, getattr(ua.VariantType, kind)))
            await self._server.write_attribute_value(self._nodes[name].nodeid, datavalue)
            self._written[name] = value

    async def _on_write(self, event: Any, _dispatcher: Any) -> None:
        """asyncua's PostWrite callback: hand the PLC's Trigger and ResultsAck writes to the handshake."""
        from asyncua import ua

        if not event.is_external:
            return
        for request, status in zip(event.request_params.NodesToWrite, event.response_params, strict=False):
            if not status.is_good() or request.AttributeId != ua.AttributeIds.Value:
                continue
            value = bool(request.Value.Value.Value)
            if request.NodeId == self._nodes["Trigger"].nodeid:
                self.handshake.write_trigger(value, self._next_part_id())
            elif request.NodeId == self._nodes["ResultsAck"].nodeid:
                self.handshake.write_ack(value)

    def _next_part_id(self) -> str | None:
        value = self._server.read_attribute_value(self._nodes["NextPartId"].nodeid).Value.Value
        return str(value) if value else None


_UNSET = object()


def _initial(kind: str) -> Any:
    return {"Boolean": False, "String": "", "Double": 0.0}.get(kind, 0)
