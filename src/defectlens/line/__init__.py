"""On the line: a station takes frames from a camera or a hot folder, decides each with the same
:class:`~defectlens.inference.Predictor` and inspection log as the service and the Inspector, and hands
every result to the PLC (OPC UA, Modbus TCP) and the MES (MQTT). See :mod:`defectlens.line.base`.
"""

from defectlens.line.base import RESULT_STATUSES, Frame, LineError, Result, Sink, Source, StationControl

__all__ = ["RESULT_STATUSES", "Frame", "LineError", "Result", "Sink", "Source", "StationControl"]
