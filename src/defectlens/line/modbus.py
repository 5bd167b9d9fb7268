"""The Modbus TCP sink: a pymodbus server the PLC polls, speaking the :mod:`~defectlens.line.handshake`.

The station is the Modbus server (slave); the PLC is the client. It answers every unit id. Addresses
are 0-based as on the wire (coil 0 is ``00001``, holding register 0 is ``40001`` in 1-based PLC
notation). The PLC writes only ``Trigger``, ``ResultsAck`` and the part id; a write anywhere else is
answered with exception 02 (illegal data address).

Coils (FC 1 read, FC 5/15 write; mirrored read-only as discrete inputs, FC 2):

==== ================ ====== =============================================================
addr name             writer meaning
==== ================ ====== =============================================================
0    Trigger          PLC    rising edge: one acquisition, when TriggerReady
1    ResultsAck       PLC    rising edge: ResultsValid falls; drop it to get the next result
2    TriggerReady     vision the station takes a trigger now
3    ResultsValid     vision a result is presented (its registers are already written)
4    OK               vision good part (only while ResultsValid)
5    NG               vision defect (only while ResultsValid)
6    NoDecision       vision no verdict: see ErrorCode (only while ResultsValid); never OK
7    Error            vision ErrorCode is not 0
8    Online           vision the station is running
9    Alarm            vision the station's alarm is raised
==== ================ ====== =============================================================

Holding registers (FC 3 read, FC 6/16 write; mirrored read-only as input registers, FC 4), 16-bit:

==== ================ ====== =============================================================
addr name             writer meaning
==== ================ ====== =============================================================
0    StatusWord       vision coils 2..9 as bits 0..7, Trigger bit 8, ResultsAck bit 9
1    ResultCounter    vision +1 per presented result, wraps 65535 -> 0
2    ClassIndex       vision Int16 (two's complement): the class, -1 without a decision
3    DefectPerMille   vision Int16: defect probability x 1000 (0..1000), -1 without a score
4    ErrorCode        vision 0 none, 1 gate refused, 2 unreadable input, 3 dropped,
                             4 station alarm, 5 no verdict
5    InspectionIdHigh vision the inspection log's id, UInt32: high word
6    InspectionIdLow  vision low word (0: no id)
7    ResultsPending   vision results queued behind the presented one
8    ResultsOverrun   vision results refused because the queue was full (wraps)
9    TriggersRefused  vision triggers refused because TriggerReady was low (wraps)
10   PartIdHigh       PLC    optional UInt32 part id for the next Trigger: high word
11   PartIdLow        PLC    low word (0: the station numbers the trigger itself)
==== ================ ====== =============================================================

One read of holding registers 0..9 is a consistent snapshot of everything the PLC needs; each request
is answered from one snapshot of the handshake, taken when the request arrives. Writes are observed
through the device's ``action`` hook (called by pymodbus on every request), not by polling, so two
writes between polls (Trigger up and down) can never be missed. That hook is the ``SimDevice`` API of
pymodbus 3.13 and later (3.12 gave it another signature; before 3.12 there was no SimDevice, and from 3.13
on the old datastore's blocks are copied into one, so a custom data block's ``setValues`` is never called).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defectlens.line.base import LineError, StationControl
from defectlens.line.handshake import HandshakeState
from defectlens.line.plcserver import PlcServer

COILS = ("Trigger", "ResultsAck", "TriggerReady", "ResultsValid", "OK", "NG", "NoDecision", "Error", "Online", "Alarm")
REGISTERS = (
    "StatusWord",
    "ResultCounter",
    "ClassIndex",
    "DefectPerMille",
    "ErrorCode",
    "InspectionIdHigh",
    "InspectionIdLow",
    "ResultsPending",
    "ResultsOverrun",
    "TriggersRefused",
    "PartIdHigh",
    "PartIdLow",
)
TRIGGER, RESULTS_ACK = 0, 1
PART_ID_HIGH, PART_ID_LOW = 10, 11
COIL_COUNT = 16  # one 16-bit word; addresses 10..15 read as 0
_BIT_READS, _BIT_WRITES = {1, 2}, {5, 15}
_REG_READS, _REG_WRITES = {3, 4}, {6, 16, 23}
MIN_PYMODBUS = (3, 13)
OPTIONS = ("host", "port", "queue_size", "wait_for_ack")


def word(value: int) -> int:
    """``value`` as one 16-bit register: negative numbers in two's complement, larger ones modulo 65536."""
    return value & 0xFFFF


def coil_image(state: HandshakeState) -> list[bool]:
    """The 16 coils (:data:`COILS` order, then zeros)."""
    bits = [
        state.trigger,
        state.results_ack,
        state.trigger_ready,
        state.results_valid,
        state.ok,
        state.ng,
        state.no_decision,
        state.error,
        state.online,
        state.alarm,
    ]
    return bits + [False] * (COIL_COUNT - len(bits))


def register_image(state: HandshakeState, part_id: Sequence[int] = (0, 0)) -> list[int]:
    """The holding registers (:data:`REGISTERS` order)."""
    coils = coil_image(state)
    status = sum(1 << i for i, bit in enumerate(coils[2:10]) if bit) | (coils[0] << 8) | (coils[1] << 9)
    return [
        status,
        word(state.result_counter),
        word(state.class_index),
        word(state.defect_per_mille),
        word(state.error_code),
        (state.inspection_id >> 16) & 0xFFFF,
        word(state.inspection_id),
        word(state.pending),
        word(state.overruns),
        word(state.triggers_refused),
        *part_id,
    ]


def _pack_bits(bits: Sequence[bool]) -> list[int]:
    """Coils as pymodbus stores them: 16 per register, coil ``n`` in bit ``n % 16``."""
    return [sum(1 << i for i, bit in enumerate(bits[k : k + 16]) if bit) for k in range(0, len(bits), 16)]


class ModbusSink(PlcServer):
    """A Modbus TCP server presenting each result to the PLC; see the module docstring for the register map.

    Args:
        host: the address to listen on (``0.0.0.0``: every interface).
        port: the TCP port (502 is the standard; 0 picks a free one, read back as :attr:`port`).
        queue_size: results that may wait for the PLC's acknowledgement (see :mod:`~defectlens.line.handshake`).
        wait_for_ack: hold TriggerReady low until the PLC has acknowledged every result.
        start_timeout: seconds to wait for the server to listen.
    """

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 502,
        queue_size: int = 32,
        wait_for_ack: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(host=host, port=port, endpoint=f"modbus://{host}:{port}", queue_size=queue_size,
                         wait_for_ack=wait_for_ack, start_timeout=start_timeout)  # fmt: skip
        self._part_id = [0, 0]

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> ModbusSink:
        """Build from a station file's ``modbus`` options: ``host``, ``port``, ``queue_size``, ``wait_for_ack``."""
        unknown = sorted(set(options) - {*OPTIONS, "type"})  # "type" selected this class
        if unknown:
            raise LineError(f"station {station!r}: unknown modbus sink option(s) {unknown}; known: {list(OPTIONS)}")
        host = options.get("host", "0.0.0.0")
        port = options.get("port", 502)
        queue_size = options.get("queue_size", 32)
        wait_for_ack = options.get("wait_for_ack", False)
        if not isinstance(host, str) or not host:
            raise LineError(f"station {station!r}: modbus sink option host={host!r} must be a host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise LineError(f"station {station!r}: modbus sink option port={port!r} must be a number 0..65535")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise LineError(f"station {station!r}: modbus sink option queue_size={queue_size!r} must be 1 or more")
        if not isinstance(wait_for_ack, bool):
            raise LineError(f"station {station!r}: modbus sink option wait_for_ack={wait_for_ack!r} must be true/false")
        return cls(host=host, port=port, queue_size=queue_size, wait_for_ack=wait_for_ack)

    @property
    def endpoint_url(self) -> str:
        """Where a PLC connects, with the bound port (after :meth:`open`)."""
        return f"modbus://{self.host}:{self.port}"

    protocol = "Modbus TCP"

    def open(self, control: StationControl) -> None:
        """Listen (pymodbus 3.13 or later); :class:`LineError` naming the endpoint when it cannot."""
        _check_pymodbus(self.endpoint)
        super().open(control)

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = ModbusTcpServer(self._device(), address=(self.host, self.port))
            await server.serve_forever(background=True)
        except (OSError, RuntimeError) as exc:
            self._error = exc
            self._started.set()
            return
        listener: Any = server.transport  # an asyncio.Server once listening
        self.port = listener.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await server.shutdown()

    def _device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        def bits() -> list[SimData]:
            return [SimData(address=0, count=COIL_COUNT, values=False, datatype=DataType.BITS)]

        def registers() -> list[SimData]:
            return [SimData(address=0, count=len(REGISTERS), values=0, datatype=DataType.REGISTERS)]

        return SimDevice(0, simdata=(bits(), bits(), registers(), registers()), action=self._action)

    async def _action(
        self,
        func_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> Any:
        """pymodbus calls this on every request: apply the PLC's writes, refresh what it reads."""
        from pymodbus.constants import ExcCodes

        if values is not None and (func_code in _BIT_WRITES or func_code in _REG_WRITES):
            if not self._apply_write(func_code, address, values):
                return ExcCodes.ILLEGAL_ADDRESS
            return None
        state = self.handshake.state()
        if func_code in _BIT_READS or func_code in _BIT_WRITES:
            image = _pack_bits(coil_image(state))
        else:
            image = register_image(state, self._part_id)
        registers[: len(image)] = image
        return None

    def _apply_write(self, func_code: int, address: int, values: Sequence[int | bool]) -> bool:
        """Hand the PLC's write to the handshake; False (exception 02) when it touches a station-owned address."""
        addresses = range(address, address + len(values))
        if func_code in _BIT_WRITES:
            if any(a not in (TRIGGER, RESULTS_ACK) for a in addresses):
                return False
            for a, value in zip(addresses, values, strict=True):
                if a == TRIGGER:
                    self.handshake.write_trigger(bool(value), self._part_id_text())
                else:
                    self.handshake.write_ack(bool(value))
            return True
        if any(a not in (PART_ID_HIGH, PART_ID_LOW) for a in addresses):
            return False
        for a, value in zip(addresses, values, strict=True):
            self._part_id[a - PART_ID_HIGH] = int(value) & 0xFFFF
        return True

    def _part_id_text(self) -> str | None:
        part = (self._part_id[0] << 16) | self._part_id[1]
        return str(part) if part else None


def _check_pymodbus(endpoint: str) -> None:
    """The ``action`` hook this sink relies on exists from pymodbus 3.13; say so rather than misbehave."""
    try:
        import pymodbus
    except ImportError as exc:
        raise LineError(f"{endpoint}: the Modbus sink needs pymodbus: pip install 'defectlens[line]' ({exc})") from exc
    version = tuple(int(part) for part in pymodbus.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_PYMODBUS or version >= (4,):
        raise LineError(
            f"{endpoint}: the Modbus sink needs pymodbus >=3.13,<4 (found {pymodbus.__version__}): "
            "pip install 'pymodbus>=3.13,<4'"
        )
