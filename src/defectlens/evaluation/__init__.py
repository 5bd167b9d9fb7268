"""Evaluation as computation: metrics with intervals, the operating threshold, calibration and
results by image attribute. It returns results; running models and writing files happen above it
(:mod:`defectlens.workflows`, :mod:`defectlens.reporting`)."""
