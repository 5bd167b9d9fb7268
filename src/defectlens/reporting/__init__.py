"""Reporting: what an evaluation leaves on disk for people and tools: ``metrics.json``,
``predictions.csv``, the figures under ``plots/`` and the self-contained ``report.html``."""
