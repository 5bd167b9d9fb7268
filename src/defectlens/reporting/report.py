"""The self-contained ``report.html``: one file, inline CSS, figures as base64 PNG, opens offline.

Owns :func:`write_report`, which renders the ``metrics.json`` payload of an evaluation plus its
figures. Every piece of text from data (class names, paths, dataset info, reasons) is escaped with
:func:`html.escape`, since dataset names and folders come from users.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from defectlens.evaluation.metrics import SCALARS

SECTIONS = (
    ("summary", "Summary"),
    ("metrics", "Metrics per split"),
    ("per-class", "Per-class results"),
    ("slices", "Results by image attribute"),
    ("confusion", "Confusion matrices"),
    ("curves", "ROC and precision-recall"),
    ("calibration", "Calibration"),
    ("threshold", "Operating threshold"),
    ("learning", "Learning curves"),
    ("mistakes", "Mistakes, most confident first"),
    ("dataset", "Dataset provenance"),
    ("model", "Model provenance"),
)
ROWS = SCALARS
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{border-bottom:2px solid #2b6cb0;padding-bottom:4px;margin-top:36px}
section{background:#fff;border-radius:8px;padding:4px 20px 16px;margin:16px 0;box-shadow:0 1px 3px #0002}
table{border-collapse:collapse;margin:8px 0;font-size:14px}th,td{border:1px solid #d5d9e0;padding:4px 10px}
th{background:#edf2f7;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.chosen td{background:#fff3c4;font-weight:600}.ci{color:#5a6475;font-size:12px}
img{max-width:100%;border:1px solid #e2e8f0;margin:6px 6px 6px 0}.note{color:#8a4b00}
.kpi{display:inline-block;background:#edf2f7;border-radius:6px;padding:8px 14px;margin:4px 8px 4px 0}
.kpi b{display:block;font-size:22px}.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure.card{margin:0;width:170px;font-size:11px}figure.card img{max-width:160px}
nav a{margin-right:12px;font-size:13px}pre{white-space:pre-wrap;font-size:12px}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return esc(v)


def _img(png: bytes | None, alt: str, missing: str = "") -> str:
    if not png:
        return f'<p class="note">{esc(missing or alt + ": not available")}</p>'
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    h = "".join(f"<th>{esc(c)}</th>" for c in head)
    body = "".join(f'<tr class="{(classes or [""] * len(rows))[i]}">{"".join(r)}</tr>' for i, r in enumerate(rows))
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_section(p: dict[str, Any]) -> str:
    splits = p["splits"]
    rows = []
    for key, label in ROWS:
        vals = [p["metrics"][s].get(key, None) for s in splits]
        if all(v is None for v in vals):  # e.g. defect metrics of a multi-class task; notes say why
            continue
        cells = [f"<td>{esc(label)}</td>"]
        for s in splits:
            ci = p["metrics"][s].get("ci", {}).get(key)
            extra = f' <span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>' if ci else ""
            cells.append(f'<td class="n">{_fmt(p["metrics"][s].get(key))}{extra}</td>')
        rows.append(cells)
    for kk in ("top2", "top3"):
        if kk in p["metrics"][splits[0]].get("top_k_accuracy", {}):
            rows.append(
                [f"<td>{kk} accuracy</td>"]
                + [f'<td class="n">{_fmt(p["metrics"][s]["top_k_accuracy"].get(kk))}</td>' for s in splits]
            )
    rows.append(["<td>Images</td>"] + [f'<td class="n">{p["metrics"][s]["n"]}</td>' for s in splits])
    by_note: dict[str, list[str]] = {}
    for s in splits:
        for n in p["metrics"][s]["notes"]:
            by_note.setdefault(n, []).append(s)
    notes = "".join(f'<li class="note">{esc(", ".join(ss))}: {esc(n)}</li>' for n, ss in by_note.items())
    return (
        _table(["metric", *[s.capitalize() for s in splits]], rows)
        + '<p class="ci">[brackets]: 95 % intervals, exact binomial (Clopper-Pearson) for accuracy and defect recall,'
        " percentile bootstrap (seeded) for macro-F1</p>" + (f"<ul>{notes}</ul>" if notes else "")
    )


def _per_class(p: dict[str, Any]) -> str:
    out = []
    for s in p["splits"]:
        rows = [
            [
                f"<td>{esc(r['class'])}</td>",
                *(f'<td class="n">{_fmt(r[k])}</td>' for k in ("precision", "recall", "f1", "support")),
            ]
            for r in p["metrics"][s]["per_class"]
        ]
        out.append(f"<h3>{esc(s)}</h3>" + _table(["class", "precision", "recall", "F1", "support"], rows))
    return "".join(out)


def _slices(p: dict[str, Any]) -> str:
    slices = p.get("slices") or {}
    if not slices:
        return (
            "<p>The images carry no attribute with a few distinct values (cell type, camera, line...) to group by.</p>"
        )
    main = "test" if "test" in slices else next(iter(slices))
    out = [f"<p>Errors of the <b>{esc(main)}</b> split counted by each attribute the images carry.</p>"]
    for key, rows in slices[main].items():
        defect = rows and "defects" in rows[0]
        head = ["value", "images", "errors", "accuracy", "labels"] + (["defects", "missed"] if defect else [])
        body = [
            [
                f"<td>{esc(r['value'])}</td>",
                f'<td class="n">{r["n"]}</td>',
                f'<td class="n">{r["errors"]}</td>',
                f'<td class="n">{_fmt(r["accuracy"])}</td>',
                f"<td>{esc(', '.join(r['labels']))}</td>",
                *(
                    [f'<td class="n">{r["defects"]}</td>', f'<td class="n">{r["missed_defects"]}</td>']
                    if defect
                    else []
                ),
            ]
            for r in rows
        ]
        out.append(f"<h3>{esc(key)}</h3>" + _table(head, body))
    return "".join(out)


def _calibration(p: dict[str, Any], figs: dict[str, Any]) -> str:
    c = p["calibration"]
    if not c["fitted_on"]:
        fitted = "Temperature not fitted (kept as stored in the model spec)"
    elif c.get("method") == "rule_of_succession":
        fitted = (
            f"<b>{esc(c['fitted_on'])}</b> was classified without error, so no temperature minimises its NLL; "
            "T was set so that its mean confidence is (n+1)/(n+2) (rule of succession)"
        )
    else:
        fitted = f"Temperature fitted on <b>{esc(c['fitted_on'])}</b> logits by LBFGS on NLL"
    rows = [
        [
            f"<td>{esc(k.upper())}</td>",
            f'<td class="n">{_fmt(c["before"][k])}</td>',
            f'<td class="n">{_fmt(c["after"][k])}</td>',
        ]
        for k in ("ece", "mce", "brier", "nll")
    ]
    return (
        f"<p>{fitted}: T = {c['temperature_before']:.4f} before, <b>{c['temperature']:.4f}</b> after.</p>"
        + _table(
            ["on " + (c["fitted_on"] or "val"), f"T={c['temperature_before']:.3g}", f"T={c['temperature']:.3g}"], rows
        )
        + _img(figs.get("reliability"), "reliability diagram")
    )


def _threshold(p: dict[str, Any], figs: dict[str, Any]) -> str:
    t = p.get("threshold")
    if not t:
        return (
            "<p>No operating threshold: decisions take the most probable class (multi-class, or no defect class).</p>"
        )
    head = (
        f"<p>Threshold <b>{t['threshold']:.4f}</b> on the calibrated defect probability "
        f"(class <b>{esc(p['positive_class'])}</b>), method <b>{esc(t['method'])}</b>: {esc(t['reason'])}. "
        "Chosen on validation only; the test split never influences it.</p>"
    )
    sweep = t["sweep"]
    if not sweep:
        return head
    # the full sweep is in metrics.json; the table shows ~25 evenly spaced rows plus the chosen one
    step = max(1, len(sweep) // 25)
    keep = sorted(
        set(range(0, len(sweep), step))
        | {len(sweep) - 1}
        | {min(range(len(sweep)), key=lambda i: abs(sweep[i]["threshold"] - t["threshold"]))}
    )
    keys = ("threshold", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "cost")
    rows = [[f'<td class="n">{_fmt(sweep[i][k])}</td>' for k in keys] for i in keep]
    cls = ["chosen" if abs(sweep[i]["threshold"] - t["threshold"]) < 1e-12 else "" for i in keep]
    return (
        head
        + _img(figs.get("threshold"), "threshold and cost curve")
        + f"<p>{len(keep)} of {len(sweep)} sweep rows (validation); cost per part = "
        f"(cost_FN·FN + cost_FP·FP) / n.</p>" + _table(list(keys), rows, cls)
    )


def _mistakes(f: dict[str, Any]) -> str:
    cards = "".join(
        f'<figure class="card">{_img(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>'
        for png, caption in f.get("mistakes") or []
    )
    return f"<p>{esc(f.get('_mistakes_note', ''))}</p>" + (f'<div class="gallery">{cards}</div>' if cards else "")


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return _table(["field", "value"], [[f"<td>{esc(k)}</td>", f"<td>{_fmt(v)}</td>"] for k, v in pairs])


def _dataset(p: dict[str, Any]) -> str:
    ds = p["provenance"]["dataset"]
    counts = ds.get("counts") or {}
    count_rows = [
        [
            f"<td>{esc(split or 'unassigned')}</td>",
            *(f'<td class="n">{c.get(k, 0)}</td>' for k in ds.get("classes", [])),
        ]
        for split, c in counts.items()
    ]
    leak = ds.get("leakage") or {}
    pairs = [
        ("name", ds.get("name")),
        ("format", ds.get("format")),
        ("source", ds.get("source")),
        ("classes", ", ".join(ds.get("classes", []))),
        ("defect class", ds.get("positive_class")),
        ("imported", ds.get("created")),
        ("skipped files", len(ds.get("skipped") or [])),
        ("byte-identical files across the source's splits", leak.get("images", 0)),
        ("split seed", (ds.get("split") or {}).get("seed")),
    ]
    warnings = "".join(f'<li class="note">{esc(w)}</li>' for w in ds.get("warnings") or [])
    return (
        _rows(pairs)
        + "<h3>images per split and class</h3>"
        + _table(["split", *ds.get("classes", [])], count_rows)
        + (f"<h3>import warnings</h3><ul>{warnings}</ul>" if warnings else "")
    )


def _model(p: dict[str, Any]) -> str:
    model = p["provenance"]["model"]
    spec = model["spec"]
    thr = p.get("threshold") or {}
    decided = [
        ("temperature used in this report", p["temperature"]),
        ("threshold used in this report", thr.get("threshold")),
        ("how the threshold was set", thr.get("method")),
        ("temperature stored with the model", spec.get("temperature")),
        ("threshold stored with the model", spec.get("threshold")),
    ]
    pairs = [
        ("architecture", spec.get("arch")),
        ("input", f"{spec.get('input_size')} px, {spec.get('in_channels')} channel(s), {spec.get('resize')}"),
        ("classes (output order)", ", ".join(spec.get("class_names", []))),
        ("defect class", spec.get("positive_class")),
        ("test-time augmentation", spec.get("tta")),
        ("model id", model.get("model_id")),
        ("runtime", model.get("backend")),
    ]
    settings = [(k.replace("_", " "), v) for k, v in p["settings"].items()]
    run = [(k, v) for k, v in (p["provenance"].get("run") or {}).items() if not isinstance(v, (dict, list))]
    config = (p["provenance"].get("run") or {}).get("config") or {}
    versions = list(p["provenance"]["versions"].items())
    return (
        _rows(pairs)
        + "<h3>decisions</h3>"
        + _rows(decided)
        + "<h3>evaluation settings</h3>"
        + _rows(settings)
        + (f"<h3>run</h3>{_rows(run)}" if run else "")
        + (f"<h3>training configuration</h3>{_rows(list(config.items()))}" if config else "")
        + "<h3>versions</h3>"
        + _rows(versions)
    )


def write_report(payload: dict[str, Any], figures: dict[str, Any], path: str | Path) -> Path:
    """Render the evaluation ``payload`` (the metrics.json dict) and ``figures`` to one HTML file."""
    p, f = payload, figures
    splits = p["splits"]
    main = "test" if "test" in splits else splits[-1]
    m = p["metrics"][main]
    kpis = [
        ("accuracy", "Accuracy"),
        ("macro_f1", "Macro F1"),
        ("defect_recall", "Defect recall"),
        ("false_alarm_rate", "False-alarm rate"),
        ("roc_auc", "ROC-AUC"),
    ]
    kpi_html = "".join(
        f'<span class="kpi">{esc(lbl)} ({esc(main)})<b>{_fmt(m.get(k))}</b></span>' for k, lbl in kpis if k in m
    )
    ds = p["provenance"]["dataset"]
    summary = (
        kpi_html + f"<p>Dataset <b>{esc(ds.get('name', '?'))}</b>, splits {esc(', '.join(splits))}; "
        f"classes {esc(', '.join(m['class_names']))}; temperature {p['temperature']:.4f}; "
        + (
            f"threshold {p['threshold']['threshold']:.4f} ({esc(p['threshold']['method'])})"
            if p.get("threshold")
            else "argmax decisions"
        )
        + f". Created {esc(p['created'])}.</p>"
        + "".join(f'<p class="note">{esc(n)}</p>' for n in p["notes"])
    )
    body = {
        "summary": summary,
        "metrics": _metrics_section(p),
        "per-class": _per_class(p),
        "slices": _slices(p),
        "confusion": "".join(_img(f.get(f"confusion_{s}"), f"confusion matrix {s}") for s in splits),
        "curves": "".join(_img(f.get(f"roc_{s}"), f"ROC {s}") + _img(f.get(f"pr_{s}"), f"PR {s}") for s in splits),
        "calibration": _calibration(p, f),
        "threshold": _threshold(p, f),
        "learning": _img(
            f.get("learning"), "learning curves: loss and metrics per epoch", "no history.csv beside the model"
        ),
        "mistakes": _mistakes(f),
        "dataset": _dataset(p),
        "model": _model(p),
    }
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in SECTIONS)
    sections = "".join(f'<section id="{k}"><h2>{esc(t)}</h2>{body[k]}</section>' for k, t in SECTIONS)
    doc = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>defectlens evaluation: '
        f"{esc(ds.get('name', ''))}</title><style>{CSS}</style></head><body><main><h1>defectlens evaluation report"
        f"</h1><nav>{nav}</nav>{sections}</main></body></html>"
    )
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path
