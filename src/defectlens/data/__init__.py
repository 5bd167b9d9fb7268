"""Data: importers that write a :class:`~defectlens.data.manifest.Manifest`, leakage-safe splits,
statistics, and the one image decoding/preprocessing path shared by training and inference."""
