"""Explain: Grad-CAM heatmaps and overlays (``pytorch_grad_cam``), imported lazily by callers."""
