"""The files of a champion-vs-challenger comparison: ``comparison.json``, ``disagreements.csv``, ``compare.html``.

Owns :class:`DisagreementRow` (one image the two models decide differently; the CSV's columns are its
fields) and :func:`write_comparison`. The HTML is one self-contained file like the evaluation report
(:mod:`defectlens.reporting.report`: its CSS, every text from data escaped): the verdict and its rule,
each model's figures with intervals, the paired table, then every disagreeing image with both decisions
and, for each model that can be explained (:func:`defectlens.explain.maps.explain`: the graph's CAM, or
Grad-CAM through torch), its overlay of the class it decided; a model that cannot gets a note instead.
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from defectlens.core.outputs import atomic_output, write_all
from defectlens.data.images import displayable
from defectlens.explain.maps import explain, unavailable
from defectlens.inference.predictor import Predictor
from defectlens.reporting.plots import thumbnail_png
from defectlens.reporting.report import CSS, esc

#: What a row shows for a model whose gate refused the frame: no class.
REVIEW = "needs review"
#: Disagreeing images drawn with overlays (each costs one explanation per model); the rest are listed.
MAX_OVERLAYS = 60
CSV_FILE, HTML_FILE, JSON_FILE = "disagreements.csv", "compare.html", "comparison.json"
#: The figures of each model, in table order.
FIGURES = (
    ("accuracy", "Accuracy"),
    ("defect_recall", "Defect recall"),
    ("false_alarm_rate", "False-alarm rate"),
    ("expected_cost", "Expected cost per part"),
)


@dataclass(frozen=True)
class DisagreementRow:
    """One image the two models decide differently (a class each, or one of them ``needs review``).

    ``*_confidence``: the calibrated probability of the class decided; ``*_defect_probability``: a binary
    model's probability of its defect class, the number its threshold is compared with (None otherwise).
    """

    file: str
    label: str
    image: Path
    champion: str
    champion_confidence: float | None
    champion_defect_probability: float | None
    champion_right: bool
    challenger: str
    challenger_confidence: float | None
    challenger_defect_probability: float | None
    challenger_right: bool


def write_csv(rows: list[DisagreementRow], path: Path) -> Path:
    """One line per disagreeing image; the columns are :class:`DisagreementRow`'s fields."""
    names = [f.name for f in fields(DisagreementRow)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if v is None else f"{v:.6g}" if isinstance(v, float) else v for v in astuple(row)])
    return path


def write_comparison(
    payload: dict[str, Any],
    rows: list[DisagreementRow],
    *,
    predictors: dict[str, Predictor],
    out_dir: Path,
    overlays: int = MAX_OVERLAYS,
) -> tuple[Path, Path]:
    """Write the three files into ``out_dir``; returns the HTML report's path and the CSV's. The first
    ``overlays`` disagreeing images get each model's overlay."""
    with atomic_output(out_dir / JSON_FILE) as fh:
        write_all(fh, (json.dumps(payload, indent=2, default=str) + "\n").encode("utf-8"))
    csv_path = write_csv(rows, out_dir / CSV_FILE)
    html_path = out_dir / HTML_FILE
    html_path.write_text(render(payload, rows, predictors=predictors, overlays=overlays), encoding="utf-8")
    return html_path, csv_path


def _value(fig: dict[str, Any] | None) -> str:
    """``0.9375 [0.6977, 0.9984]`` (k/n), or n/a."""
    if not fig or fig.get("value") is None:
        return "n/a"
    ci = fig.get("ci")
    counts = f" ({fig['k']}/{fig['n']})" if "k" in fig else ""
    interval = f' <span class="ci">[{ci[0]:.4f}, {ci[1]:.4f}]</span>' if ci else ""
    return f"{fig['value']:.4f}{esc(counts)}{interval}"


def _threshold(spec: dict[str, Any]) -> str:
    """A binary model's stored threshold on P(defect), or how it decides without one."""
    t = spec.get("threshold")
    return esc(f"P({spec.get('positive_class')}) >= {t:g}") if t is not None else "most probable class"


def _figures_table(payload: dict[str, Any]) -> str:
    models = payload["models"]
    head = "<tr><th>figure</th>" + "".join(f"<th>{esc(r)}</th>" for r in models) + "</tr>"
    cells = [[_value(m["figures"].get(key)) for m in models.values()] for key, _ in FIGURES]
    body = "".join(
        f"<tr><td>{esc(label)}</td>" + "".join(f'<td class="n">{c}</td>' for c in row) + "</tr>"
        for (_, label), row in zip(FIGURES, cells, strict=True)
    )
    body += "<tr><td>images judged</td>" + "".join(
        f'<td class="n">{m["figures"]["images"]}</td>' for m in models.values()
    )
    body += "</tr><tr><td>decision threshold</td>" + "".join(
        f'<td class="n">{_threshold(m.get("spec", {}))}</td>' for m in models.values()
    )
    body += "</tr><tr><td>needs review (gate)</td>" + "".join(
        f'<td class="n">{m["needs_review"]}</td>' for m in models.values()
    )
    return f"<table>{head}{body}</tr></table>"


def _paired_section(payload: dict[str, Any]) -> str:
    t = payload["paired"]
    rows = (
        ("", "challenger right", "challenger wrong"),
        ("champion right", t["both_right"], t["champion_only"]),
        ("champion wrong", t["challenger_only"], t["both_wrong"]),
    )
    cells = "".join(
        "<tr>" + "".join(f"<th>{esc(c)}</th>" if i == 0 or r == rows[0] else f'<td class="n">{esc(c)}</td>'
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )  # fmt: skip
    return (
        f"<p>{t['n']} images decided by both models (of {payload['images']}); exact McNemar test on the "
        f"{t['champion_only'] + t['challenger_only']} discordant pairs: <b>p = {t['p_value']:.4g}</b>.</p>"
        f"<table>{cells}</table>"
    )


def _overlay(predictor: Predictor, row: DisagreementRow, decided: str) -> str:
    """The overlay of the class ``decided`` as an ``<img>``, or a note saying why there is none."""
    if decided == REVIEW:
        return '<p class="note">needs review: no class to explain</p>'
    why = unavailable(predictor)
    if why is not None:
        return f'<p class="note">no overlay: {esc(why)}</p>'
    try:
        found = explain(predictor, row.image, target=decided)
    except Exception as exc:  # an explainer failure must not lose the comparison
        return f'<p class="note">no overlay: {esc(type(exc).__name__)}: {esc(exc)}</p>'
    png = base64.b64encode(thumbnail_png(displayable(found.overlay))).decode("ascii")
    return f'<img alt="{esc(found.method)}" title="{esc(found.method)}" src="data:image/png;base64,{png}">'


def _row(row: DisagreementRow, predictors: dict[str, Predictor] | None) -> str:
    def side(role: str) -> str:
        decided, conf, right = getattr(row, role), getattr(row, f"{role}_confidence"), getattr(row, f"{role}_right")
        p_defect = getattr(row, f"{role}_defect_probability")
        text = esc(decided) + (f" (p={conf:.3f})" if conf is not None else "") + (" ✓" if right else " ✗")
        text += f'<br><span class="ci">P(defect) {p_defect:.3f}</span>' if p_defect is not None else ""
        return text + (_overlay(predictors[role], row, decided) if predictors else "")

    return (
        f'<tr class="disagreement"><td class="file">{esc(row.file)}</td><td>{esc(row.label)}</td>'
        f"<td>{side('champion')}</td><td>{side('challenger')}</td></tr>"
    )


def _disagreements(rows: list[DisagreementRow], predictors: dict[str, Predictor], overlays: int) -> str:
    if not rows:
        return "<p>The two models decide every image alike.</p>"
    note = (
        f'<p class="note">overlays for the first {overlays} of {len(rows)} images; every row is in {CSV_FILE}</p>'
        if len(rows) > overlays
        else ""
    )
    head = "<tr><th>file</th><th>label</th><th>champion</th><th>challenger</th></tr>"
    body = "".join(_row(r, predictors if i < overlays else None) for i, r in enumerate(rows))
    return f"{note}<table>{head}{body}</table>"


def render(
    payload: dict[str, Any],
    rows: list[DisagreementRow],
    *,
    predictors: dict[str, Predictor],
    overlays: int = MAX_OVERLAYS,
) -> str:
    """The whole ``compare.html`` as a string."""
    v, d, costs = payload["verdict"], payload["dataset"], payload["costs"]
    sources = " vs ".join(f"{esc(r)} <b>{esc(m['source'])}</b>" for r, m in payload["models"].items())
    summary = (
        f"<p>{sources}</p><p>Dataset <b>{esc(d.get('name') or d['data'])}</b>, split {esc(d['split'])}, "
        f"{payload['images']} images; costs: missed defect {costs['cost_fn']:g}, false alarm {costs['cost_fp']:g} "
        f"({esc(costs['from'])}).</p>"
        f'<span class="kpi">verdict<b>{esc(v["decision"])}</b></span>'
        + "".join(f"<p>{esc(r)}</p>" for r in v["reasons"])
        + f'<p class="ci">Rule: {esc(v["rule"])}.</p>'
    )
    sections = (
        ("Verdict", summary),
        ("Figures per model (95 % intervals)", _figures_table(payload)
         + '<p class="ci">On the images each model decided; brackets: Clopper-Pearson exact intervals for the '
           "proportions, percentile bootstrap for the expected cost.</p>"),
        ("Paired decisions", _paired_section(payload)),
        (f"Images where they disagree ({len(rows)})", _disagreements(rows, predictors, overlays)),
    )  # fmt: skip
    body = "".join(f"<section><h2>{esc(title)}</h2>{html}</section>" for title, html in sections)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>defectlens compare</title>'
        f"<style>{CSS}</style></head><body><main><h1>Champion vs challenger</h1>{body}</main></body></html>"
    )
