"""Champion vs challenger: two models on the same labelled split, a paired test and a promotion verdict.

Owns :func:`compare_models` (what ``defectlens compare`` runs). Both models score the split through the
:class:`~defectlens.inference.predictor.Predictor` exactly as ``defectlens evaluate`` scores it
(:func:`~defectlens.workflows.evaluate.score_records`: each model preprocesses with its own spec, so their
input channels and sizes may differ) and decide as deployed: their stored temperature and threshold. A
frame a model's gate refuses is *needs review* for that model: counted apart, never a class, and left
out of that model's figures and of the paired images. The numbers come from
:mod:`defectlens.evaluation.paired`; the files (``comparison.json``, ``disagreements.csv``,
``compare.html``) from :mod:`defectlens.reporting.compare`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.anomaly import model_label, pick_normal
from defectlens.core.errors import DefectlensError
from defectlens.core.machine import versions
from defectlens.core.outputs import output_error
from defectlens.core.progress import Progress
from defectlens.core.runtime import tune_cpu_allocator
from defectlens.core.spec import ModelSpec
from defectlens.data.manifest import SPLITS, Manifest, Record
from defectlens.evaluation.evaluate import SplitScores, positive_class_of
from defectlens.evaluation.paired import PROMOTE, model_figures, paired_table, verdict
from defectlens.inference.predictor import Predictor
from defectlens.reporting.compare import MAX_OVERLAYS, REVIEW, DisagreementRow, write_comparison
from defectlens.workflows.evaluate import next_free, score_records

ROLES = ("champion", "challenger")
#: Costs of a missed defect and of a false alarm when neither the command nor the champion's training names them.
DEFAULT_COSTS = (10.0, 1.0)
RESULT_FILE = "comparison.json"


@dataclass(frozen=True)
class Side:
    """One model's decisions on the split: class name per image, or None where its gate refused the frame."""

    role: str
    source: Path
    predictor: Predictor
    scores: SplitScores
    decided: list[str | None]
    probs: np.ndarray
    truth: list[str]
    is_defect: Callable[[str], bool] | None

    def right(self) -> np.ndarray:
        return np.array([d == t for d, t in zip(self.decided, self.truth, strict=True)], dtype=bool)

    def covered(self) -> np.ndarray:
        return np.array([d is not None for d in self.decided], dtype=bool)

    def defects(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per image: whether its label is a defect, and whether this model called it one (None: no good class)."""
        if self.is_defect is None:
            return None
        truth = np.array([self.is_defect(t) for t in self.truth], dtype=bool)
        called = np.array([d is not None and self.is_defect(d) for d in self.decided], dtype=bool)
        return truth, called


@dataclass(frozen=True)
class ComparisonRun:
    """A comparison and where its files went; ``decision`` is ``promote`` or ``keep champion``."""

    payload: dict[str, Any]
    out_dir: Path
    report_path: Path
    csv_path: Path

    @property
    def decision(self) -> str:
        return str(self.payload["verdict"]["decision"])

    @property
    def promoted(self) -> bool:
        return self.decision == PROMOTE


def defect_rule(spec: ModelSpec, dataset_positive: str | None) -> Callable[[str], bool] | None:
    """Which of a model's classes are defects: a binary model's defect class (its own, else the dataset's);
    otherwise every class but the good one (``good``/``ok``/``normal``..., as anomaly mode finds it); None
    when the classes name no good class (NEU's six are all defects)."""
    pos = positive_class_of(spec, dataset_positive)
    if pos is not None:
        return lambda name: name == pos
    try:
        normal = pick_normal(spec.class_names, None)
    except DefectlensError:
        return None
    return lambda name: name != normal


def check_inputs(
    champion: Predictor, challenger: Predictor, manifest: Manifest, split: str, data: Path
) -> list[Record]:
    """The split's records, after checking the two models and the dataset fit together.

    Raises:
        DefectlensError: for models with other classes, an unknown or empty split, or labels a model lacks.
    """
    a, b = list(champion.spec.class_names), list(challenger.spec.class_names)
    if set(a) != set(b):
        raise DefectlensError(
            f"the challenger's classes {b} are not the champion's {a}: a comparison needs two models of the same "
            "classes (the order may differ)"
        )
    if split not in SPLITS:
        raise DefectlensError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    records = manifest.split(split)
    if not records:
        present = sorted({r.split for r in manifest.records if r.split})
        raise DefectlensError(
            f"{data}: the dataset has no {split!r} split (its splits: {', '.join(present) or 'none'}); pass --split"
        )
    for role, p in zip(ROLES, (champion, challenger), strict=True):
        unknown = sorted({model_label(p.spec, r.label) for r in records} - set(p.spec.class_names))
        if unknown:
            raise DefectlensError(
                f"{data}: the {split} split has labels {unknown} that the {role} does not have (its classes: "
                f"{list(p.spec.class_names)}); compare on the dataset the models were trained for"
            )
    return records


def score_side(
    role: str, source: Path, predictor: Predictor, manifest: Manifest, records: list[Record], *, progress: Progress
) -> Side:
    """One model's scores and decisions on ``records``, as deployed (stored temperature and threshold)."""
    scores = score_records(
        predictor, manifest, records, batch_size=32, progress=progress, label=f"{records[0].split} ({role})"
    )
    names = list(predictor.spec.class_names)
    probs = predictor.probabilities(scores.logits)
    idx = predictor.decide(probs)
    refuses = predictor.gate.mode == "refuse" and scores.gate_kinds is not None
    review = [bool(k) and refuses for k in (scores.gate_kinds or [()] * len(idx))]
    decided = [None if r else names[int(i)] for i, r in zip(idx, review, strict=True)]
    truth = [names[int(y)] for y in scores.y]
    rule = defect_rule(predictor.spec, manifest.info.get("positive_class"))
    return Side(role, source, predictor, scores, decided, probs, truth, rule)


def side_figures(side: Side, mask: np.ndarray, *, costs: tuple[float, float], bootstrap: int) -> dict[str, Any]:
    """A model's figures on the images ``mask`` selects (each of which it decided)."""
    defects = side.defects()
    truth, called = (None, None) if defects is None else (defects[0][mask], defects[1][mask])
    return model_figures(truth, called, side.right()[mask], cost_fn=costs[0], cost_fp=costs[1], bootstrap=bootstrap)


def resolve_costs(champion: Predictor, cost_fn: float | None, cost_fp: float | None) -> tuple[float, float, str]:
    """The costs both models are scored with: given, else the champion's training configuration's, else 10 and 1."""
    config = champion.meta.get("training_config") or champion.meta.get("config") or {}
    recorded = (config.get("cost_fn"), config.get("cost_fp")) if isinstance(config, dict) else (None, None)
    fn = cost_fn if cost_fn is not None else recorded[0] if recorded[0] is not None else DEFAULT_COSTS[0]
    fp = cost_fp if cost_fp is not None else recorded[1] if recorded[1] is not None else DEFAULT_COSTS[1]
    if float(fn) < 0 or float(fp) < 0:
        raise DefectlensError(f"costs must be >= 0, got FN {fn} and FP {fp}")
    given = "given" if cost_fn is not None or cost_fp is not None else ""
    origin = given or ("the champion's training configuration" if any(v is not None for v in recorded) else "default")
    return float(fn), float(fp), origin


def disagreements(champ: Side, chall: Side, records: list[Record]) -> list[DisagreementRow]:
    """The images whose outcome (class, or needs review) differs between the two models, in split order."""
    rows = []
    for i, record in enumerate(records):
        a, b = champ.decided[i], chall.decided[i]
        if a == b:
            continue
        rows.append(
            DisagreementRow(
                file=record.path,
                label=record.label,
                image=champ.scores.paths[i],
                champion=a or REVIEW,
                champion_confidence=_confidence(champ, i),
                champion_defect_probability=_defect_probability(champ, i),
                champion_right=a == champ.truth[i],
                challenger=b or REVIEW,
                challenger_confidence=_confidence(chall, i),
                challenger_defect_probability=_defect_probability(chall, i),
                challenger_right=b == chall.truth[i],
            )
        )
    return rows


def _confidence(side: Side, i: int) -> float | None:
    """The calibrated probability of the class the model decided (None: it needs review)."""
    d = side.decided[i]
    return None if d is None else float(side.probs[i, list(side.predictor.spec.class_names).index(d)])


def _defect_probability(side: Side, i: int) -> float | None:
    """A binary model's probability of its defect class (what its threshold is compared with), else None."""
    pos = side.predictor.spec.positive_index
    if side.decided[i] is None or pos is None or len(side.predictor.spec.class_names) != 2:
        return None
    return float(side.probs[i, pos])


def comparison_payload(champ: Side, chall: Side, *, costs: tuple[float, float, str], bootstrap: int) -> dict[str, Any]:
    """The ``comparison.json`` content: each model's figures, the paired table and the verdict."""
    both = champ.covered() & chall.covered()
    models: dict[str, Any] = {}
    for side in (champ, chall):
        covered = side.covered()
        models[side.role] = {
            "source": str(side.source),
            "model_id": side.predictor.model_id,
            "backend": side.predictor.backend,
            "spec": side.predictor.spec.to_dict(),
            "gate": side.predictor.gate.describe(),
            "needs_review": int((~covered).sum()),
            "figures": side_figures(side, covered, costs=costs[:2], bootstrap=bootstrap),
            "paired_figures": side_figures(side, both, costs=costs[:2], bootstrap=0),
        }
    table = paired_table(champ.right()[both], chall.right()[both])
    recalls = [models[r]["paired_figures"]["defect_recall"]["value"] for r in ROLES]
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": len(champ.decided),
        "paired_images": int(both.sum()),
        "costs": {"cost_fn": costs[0], "cost_fp": costs[1], "from": costs[2]},
        "models": models,
        "paired": table.to_dict(),
        "verdict": verdict(table, recalls[0], recalls[1]),
        "versions": versions(),
    }


def _output_folder(champion: Path, challenger: Path, out_dir: str | Path | None, *, force: bool) -> Path:
    if out_dir is None:
        return next_free(challenger.with_name(f"compare-{champion.stem}-vs-{challenger.stem}"))
    out = Path(out_dir)
    if (out / RESULT_FILE).exists() and not force:
        raise DefectlensError(f"{out} holds an earlier comparison; pass --force to replace it, or another --out")
    return out


def compare_models(
    champion: str | Path,
    challenger: str | Path,
    *,
    data: str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    force: bool = False,
    cost_fn: float | None = None,
    cost_fp: float | None = None,
    gate: str = "refuse",
    bootstrap: int = 1000,
    overlays: int = MAX_OVERLAYS,
    progress: Progress | None = None,
) -> ComparisonRun:
    """Score ``split`` of ``data`` with both models, test the paired decisions and write the comparison.

    The verdict follows :data:`~defectlens.evaluation.paired.RULE`. Files: ``comparison.json``,
    ``disagreements.csv`` (every image the two decide differently) and ``compare.html`` (the same
    images with both decisions and, for the first ``overlays`` of them, each model's overlay where it
    can be explained).

    Raises:
        DefectlensError: for a missing model or dataset, models of other classes, a split the dataset lacks
            or with labels a model lacks, or ``out_dir`` holding an earlier comparison without ``force``.
    """
    if overlays < 0 or bootstrap < 0:
        raise DefectlensError(f"overlays and bootstrap must be >= 0, got {overlays} and {bootstrap}")
    tune_cpu_allocator()
    progress = progress or Progress()
    sources = (Path(champion), Path(challenger))
    predictors = [Predictor.load(s, gate=gate) for s in sources]
    manifest = Manifest.read(data)
    records = check_inputs(predictors[0], predictors[1], manifest, split, Path(data))
    costs = resolve_costs(predictors[0], cost_fn, cost_fp)
    out = _output_folder(*sources, out_dir, force=force)
    champ, chall = (
        score_side(role, src, p, manifest, records, progress=progress)
        for role, src, p in zip(ROLES, sources, predictors, strict=True)
    )
    payload = comparison_payload(champ, chall, costs=costs, bootstrap=bootstrap)
    payload["dataset"] = {"data": str(Path(data).resolve()), "name": manifest.info.get("name"), "split": split}
    rows = disagreements(champ, chall, records)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc) from None
    with progress.phase("writing the comparison"):
        report, csv_path = write_comparison(
            payload, rows, predictors=dict(zip(ROLES, predictors, strict=True)), out_dir=out, overlays=overlays
        )
    return ComparisonRun(payload, out, report, csv_path)
