"""Evaluation: metrics, operating threshold, calibration, plots and the HTML report."""
