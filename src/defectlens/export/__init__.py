"""Export: a trained checkpoint -> a verified ``.dlens`` bundle (ONNX + safetensors + spec.json),
with torch/ONNX Runtime parity and INT8 checks. The bundle format itself is :mod:`defectlens.core.bundle`.

Heavy modules (torch, onnx, onnxruntime) load only inside the functions that use them.
"""

from defectlens.export.exporter import ExportResult, export_bundle
from defectlens.export.parity import ParityError

__all__ = ["ExportResult", "ParityError", "export_bundle"]
