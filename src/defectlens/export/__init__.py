"""Export: the ``.dlens`` bundle (ONNX + safetensors + spec.json) and its parity checks.

Heavy modules (torch, onnx, onnxruntime) load only inside the functions that use them.
"""

from defectlens.export.bundle import Bundle, is_bundle, read_bundle, write_bundle
from defectlens.export.exporter import ExportResult, export_bundle
from defectlens.export.parity import ParityError

__all__ = ["Bundle", "ExportResult", "ParityError", "export_bundle", "is_bundle", "read_bundle", "write_bundle"]
