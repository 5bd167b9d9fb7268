"""The end-of-run summary table printed by ``defectlens train`` and ``defectlens demo``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from defectlens.training.trainer import RunResult

_SHOWN = ("accuracy", "balanced_accuracy", "macro_f1", "defect_recall", "defect_precision", "roc_auc")


def _fmt(value: object) -> str:
    if isinstance(value, dict):  # metrics with a confidence interval
        value = value.get("value", value.get("mean"))
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def print_summary(result: RunResult, *, title: str = "training run") -> None:
    """A rich table: best epoch and validation macro-F1, then the evaluated metrics per split."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{title}: best epoch {result.best_epoch}, val macro-F1 {result.best_val_macro_f1:.4f}")
    table.add_column("split")
    keys = [k for k in _SHOWN if any(k in m for m in result.metrics.values())]
    for k in keys:
        table.add_column(k, justify="right")
    for split, m in result.metrics.items():
        table.add_row(split, *(_fmt(m.get(k)) for k in keys))
    if result.metrics:
        console.print(table)
    spec = result.spec
    if spec.threshold is not None:
        console.print(f"threshold {spec.threshold:.4f} on P({spec.positive_class}), temperature {spec.temperature:.3f}")
    console.print(f"time {result.seconds:.0f}s; run folder: [bold]{result.run_dir}[/bold]")
