"""Inference: the :class:`~defectlens.inference.predictor.Predictor` (the one path from an image to a
decision, used by the CLI, evaluation, the web service and the inspector), its runtimes and the
latency benchmark. Loading a bundle and predicting with ONNX Runtime imports no torch."""
