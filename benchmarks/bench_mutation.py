"""Mutation testing of the modules that decide (issue #34): how many small changes to each one its tests catch.

For each module, mutmut (pinned in the ``dev`` extra) runs in a scratch copy of ``src/`` and ``tests/``
(``build/mutation/<module>``) with only the module's own test files selected; every mutant it makes
(an operator, constant, argument or return value changed) runs the tests that reach the mutated
function, and survives if they all pass. Per module this records the score (mutants killed, a timeout
or a crash included, over all mutants less the equivalent ones), every survivor with its diff, and
how long the run took, into ``benchmarks/results/mutation.json``; a run of some modules keeps the
others' earlier entries. An equivalent mutant (no test could tell it from the original) is listed in
:data:`EQUIVALENT` with the reason, and kept out of the score; one whose diff no longer matches is a
survivor again.

    make mutation                                     # every module (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/bench_mutation.py --modules decision auth threshold
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
WORK = ROOT / "build" / "mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"


@dataclass(frozen=True)
class Target:
    """A module to mutate, the test paths that cover it, and optionally the functions to mutate (mutmut
    name patterns; default: every function in the file)."""

    source: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


#: Smallest first, so a short run still covers the decision rule, the key check and the threshold.
TARGETS: dict[str, Target] = {
    "decision": Target(
        "src/defectlens/core/decision.py",
        ("tests/unit/core", "tests/unit/evaluation", "tests/unit/gui/test_session.py"),
    ),
    "auth": Target("src/defectlens/serve/auth.py", ("tests/unit/serve",)),
    "threshold": Target("src/defectlens/evaluation/threshold.py", ("tests/unit/evaluation",)),
    "batcher": Target("src/defectlens/serve/batcher.py", ("tests/unit/serve/test_batcher.py",)),
    "spec": Target(
        "src/defectlens/core/spec.py",
        ("tests/unit/core", "tests/unit/test_spec_and_cli.py", "tests/unit/hardening/test_fuzz.py"),
    ),
    "predict_rows": Target(
        "src/defectlens/workflows/predict.py",
        ("tests/unit/workflows", "tests/unit/hardening/test_predict_output.py"),
        ("defectlens.workflows.predict.x_row_of__mutmut_*", "defectlens.workflows.predict.*_CsvSink*"),
    ),
    "numeric": Target("src/defectlens/evaluation/numeric.py", ("tests/unit/evaluation",)),
    "metrics": Target("src/defectlens/evaluation/metrics.py", ("tests/unit/evaluation",)),
    "store": Target(
        "src/defectlens/inspections/store.py", ("tests/unit/inspections", "tests/unit/serve/test_inspections_api.py")
    ),
}

#: why a smaller or larger worker pool changes nothing the batcher's callers can see
ANY_POOL = (
    "each of the `concurrency` gathering tasks awaits its call before it gathers again, so at most `concurrency`"
    " calls run at once whatever the pool's size; only the worker threads' names could differ"
)

#: mutant name -> (the line the mutant adds, why no test can tell it from the original)
EQUIVALENT: dict[str, tuple[str, str]] = {
    "defectlens.serve.auth.x_key_checker__mutmut_5": (
        '+        given = request.headers.get("X-API-KEY")',
        "Starlette's Headers look names up case-insensitively: any spelling of the name reads the same header",
    ),
    "defectlens.serve.auth.x_key_checker__mutmut_12": (
        '+        auth = request.headers.get("AUTHORIZATION", "")',
        "Starlette's Headers look names up case-insensitively: any spelling of the name reads the same header",
    ),
    "defectlens.serve.auth.x_key_checker__mutmut_13": (
        '+        auth = request.headers.get("authorization", "XXXX")',
        "the default only meets auth[:7].lower() == 'bearer ', which 'XXXX' fails exactly as '' does",
    ),
    "defectlens.evaluation.threshold.x_f1_decisions__mutmut_7": (
        "+    choice = choose_threshold((np.asarray(y) == positive).astype(int), probs[:, positive], )",
        "method='f1' is choose_threshold's default: dropping the argument asks for the same method",
    ),
    "defectlens.evaluation.threshold.x_f1_decisions__mutmut_8": (
        '+    choice = choose_threshold((np.asarray(y) == positive).astype(None), probs[:, positive], method="f1")',
        "astype(None) gives 0.0/1.0 floats, which threshold_sweep turns into the same booleans as 0/1 ints",
    ),
    "defectlens.serve.batcher.xǁBatcherǁ_gather__mutmut_14": (
        "+        if self._announced <= 0 or remaining < 0:",
        (
            "remaining is a difference of two clock readings; at exactly 0.0, wait_for(get(), 0) on an empty queue"
            " times out at once and breaks, as <= 0 does"
        ),
    ),
    **{
        f"defectlens.serve.batcher.xǁBatcherǁ_loop__mutmut_{n}": (
            f"+        for (_, fut), result in zip(batch, results, {arg}):",
            "the lengths are compared just before and a mismatch fails the whole batch, so zip's strict check"
            " can never fire: strict=True, False or absent behave the same",
        )
        for n, arg in ((30, "strict=None"), (33, ""), (34, "strict=False"))
    },
    "defectlens.core.spec.x_spec_problems__mutmut_76": (
        '+    t, (tlo, thi) = d.get("temperature", 2.0), TEMPERATURE_RANGE',
        "the default only stands in for a missing temperature in the range check, and 2.0 is as valid as 1.0;"
        " ModelSpec's own default (1.0) is what a spec without a temperature gets",
    ),
    **{
        f"defectlens.evaluation.numeric.x__divide__mutmut_{n}": (
            f"+    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, {arg})",
            "every denominator is a count array (int64) or a float64 sum of counts; np.divide by the float64"
            " numerator promotes an int64 one exactly (counts stay far below 2**53): the same quotients, and"
            " den != 0 the same mask",
        )
        for n, arg in ((7, "dtype=None"), (9, ""))
    },
    **{
        f"defectlens.evaluation.numeric.x_precision_recall_f1_support__mutmut_{n}": (
            f"+    f1 = _divide(2.0 * tp, {expr})",
            "astype(None) is astype(float64): the same array",
        )
        for n, expr in (
            (22, "true_sum.astype(None) + pred_sum.astype(np.float64)"),
            (23, "true_sum.astype(np.float64) + pred_sum.astype(None)"),
        )
    },
    **{
        f"defectlens.evaluation.numeric.x_mcc__mutmut_{n}": (
            f"+    {line}",
            "counts summed as int64 instead of float64: the dot products and n**2 made from them are then exact"
            " integers, and the float64 ones are exact too while they stay below 2**53, that is for any split under"
            " 94 million samples (two label arrays of 1.5 GB, more than a test can hold): the same MCC",
        )
        for n, line in (
            (10, "t_sum = cm.sum(axis=1, dtype=None)"),
            (12, "t_sum = cm.sum(axis=1, )"),
            (16, "p_sum = cm.sum(axis=0, dtype=None)"),
            (18, "p_sum = cm.sum(axis=0, )"),
            (22, "n_correct = np.trace(cm, dtype=None)"),
            (24, "n_correct = np.trace(cm, )"),
        )
    },
    "defectlens.evaluation.numeric.x__ranked_counts__mutmut_2": (
        "+    y = np.asarray(y_binary).astype(None)",
        "the labels are 0/1 or booleans (every caller passes (y == c).astype(int)); as 0.0/1.0 floats they give the"
        " same all() and any() and the same int64 cumulative sum. Other values have no agreed meaning: scikit-learn"
        " refuses them without a pos_label",
    ),
    **{
        f"defectlens.evaluation.numeric.x__ranked_counts__mutmut_{n}": (
            f"+    order = np.argsort(-s, {arg})",
            "the order only has to be by score: each run of equal scores is read at its last sample, where the"
            " cumulative counts hold the whole run whatever the order of its samples",
        )
        for n, arg in ((16, "kind=None"), (18, ""))
    },
    "defectlens.evaluation.numeric.x__ranked_counts__mutmut_21": (
        '+    order = np.argsort(-s, kind="STABLE")',
        "NumPy reads the sort kind case-insensitively: 'STABLE' is the same stable sort",
    ),
    **{
        f"defectlens.evaluation.numeric.x__ranked_counts__mutmut_{n}": (
            f"+    tps = np.cumsum(y, {arg})[last]",
            "the cumulative sum of a bool array accumulates in NumPy's default integer, int64 on the 64-bit"
            " platforms defectlens runs on (NumPy 2, Windows included): the same counts in the same dtype",
        )
        for n, arg in ((31, "dtype=None"), (33, ""))
    },
    "defectlens.evaluation.numeric.x_top_k_accuracy__mutmut_6": (
        '+    ranked = np.argsort(np.asarray(probs), kind="mergesort")[:, ::-1]',
        "probs is (n, k), a row of class probabilities per sample (the [:, ::-1] that follows needs two axes):"
        " argsort's default axis, -1, is axis 1",
    ),
    "defectlens.evaluation.numeric.x_top_k_accuracy__mutmut_11": (
        '+    ranked = np.argsort(np.asarray(probs), axis=1, kind="MERGESORT")[:, ::-1]',
        "NumPy reads the sort kind case-insensitively: 'MERGESORT' is the same stable sort",
    ),
    **{
        f"defectlens.evaluation.numeric.x_brier_binary__mutmut_{n}": (
            f"+    y = np.asarray(y_binary, {arg})",
            "the labels are 0/1 or booleans, which every dtype holds exactly, and 1.0 - y and the subtraction of"
            " the float64 probabilities make float64 of them either way: the same squares",
        )
        for n, arg in ((8, "dtype=None"), (10, ""))
    },
    **{
        f"defectlens.evaluation.metrics.x__classification__mutmut_{n}": (
            f'+        "weighted_f1": numeric.f1_average(y, pred, k, average={arg}),',
            "numeric.f1_average takes every average other than 'macro' as 'weighted' (only mypy's Literal check"
            " refuses another value): the same weighted F1",
        )
        for n, arg in ((48, "None"), (53, '"XXweightedXX"'), (54, '"WEIGHTED"'))
    },
    "defectlens.evaluation.metrics.x__bootstrap__mutmut_67": (
        "+        f1s[:, c] = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), None)",
        (
            "np.where(..., None) makes an object array whose None becomes NaN when stored into the float "
            "array f1s, as np.nan does"
        ),
    ),
    "defectlens.evaluation.metrics.x__bootstrap__mutmut_7": (
        "+    idx = rng.integers(len(y), size=(n_boot, len(y)))",
        (
            "Generator.integers(n, size=...) draws from [0, n) with the same stream as integers(0, n, "
            "size=...): the same resamples"
        ),
    ),
    "defectlens.evaluation.metrics.x__bootstrap__mutmut_80": (
        "+        f1s[:, c] = np.where(denom > 0, 2 * tp / np.maximum(denom, 2), np.nan)",
        ("np.maximum(denom, 2) differs only at denom == 1, where tp == 0 and 2 * tp / 1 == 2 * tp / 2 == 0"),
    ),
    "defectlens.evaluation.metrics.x__bootstrap__mutmut_82": (
        '+        warnings.simplefilter("ignore", None)',
        (
            "no warning can arise in the block (each resample has a sample, so nanmean never meets an all-NaN"
            " row; percentile and beta.ppf on finite values do not warn), so the filter's category is never "
            "consulted"
        ),
    ),
    "defectlens.evaluation.metrics.x__bootstrap__mutmut_84": (
        '+        warnings.simplefilter("ignore", )',
        ("no warning can arise in the block (see mutant 82): ignoring every category ignores the same nothing"),
    ),
    "defectlens.evaluation.metrics.x__ranking__mutmut_15": (
        "+        yc = (y == c).astype(None)",
        (
            "astype(None) gives 0.0/1.0 floats: 0 < yc.sum() < n holds for the same classes, and numeric.roc_auc"
            " and average_precision read the labels through astype(bool), the same outcomes as from 0/1 ints"
        ),
    ),
    "defectlens.evaluation.metrics.x__ranking__mutmut_46": (
        "+    if k > 2 and 1 < len(aucs) < k:",
        (
            "with k > 2, len(aucs) is never 1: a class enters aucs iff it is present and not alone, so 2+ "
            "classes present put 2+ in aucs and one puts none"
        ),
    ),
    "defectlens.evaluation.metrics.x_brier__mutmut_13": (
        "+        return numeric.brier_binary((y_true == pos).astype(None), probs[:, pos])",
        "astype(None) gives 0.0/1.0 floats, and numeric.brier_binary reads the labels as float64 in any case"
        " (np.asarray(y_binary, dtype=np.float64)): the same targets",
    ),
    "defectlens.evaluation.metrics.x_compute_metrics__mutmut_140": (
        "+    if bootstrap and bootstrap >= 0:",
        ("`bootstrap and` already excludes 0, the only value where >= 0 and > 0 differ"),
    ),
    "defectlens.evaluation.metrics.x_compute_metrics__mutmut_33": (
        "+    pred = decide(p, positive_index=positive_index if (binary) or True else None, threshold=threshold)",
        (
            "decide() uses positive_index only for a 2-column array with a threshold; when binary is False "
            "there, positive_index is None already"
        ),
    ),
    "defectlens.evaluation.metrics.x_compute_metrics__mutmut_84": (
        "+    out.update(_ranking(y, p, positive_index if (binary) or True else None, notes))",
        ("_ranking reads positive_index only when k == 2; when binary is False there, positive_index is None already"),
    ),
    "defectlens.evaluation.metrics.x_reliability_bins__mutmut_28": (
        "+    idx = np.clip(np.ceil(conf * n_bins).astype(None) - 1, 0, n_bins - 1)",
        ("astype(None) gives float64 bin indices; clip and the idx == b masks select the same rows as with ints"),
    ),
    "defectlens.evaluation.metrics.x_reliability_bins__mutmut_5": (
        "+    correct = (probs.argmax(axis=1) == y_true).astype(None)",
        ("astype(None) is astype(float64): the same array"),
    ),
    "defectlens.inspections.store.x__verdict_label__mutmut_5": (
        '+    prediction = row["PREDICTION"]',
        ("sqlite3.Row looks columns up by name case-insensitively: row['PREDICTION'] is row['prediction']"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_10": (
        '+        ("STATION", self.station),',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_19": (
        '+        clauses.append("verdict is null")',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_20": (
        '+        clauses.append("VERDICT IS NULL")',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_24": (
        '+        clauses.append("VERDICT = ?")',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_29": (
        '+        clauses.append("CREATED_UTC >= ?")',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_34": (
        '+        clauses.append("CREATED_UTC <= ?")',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_4": (
        '+        ("PREDICTION", self.label),',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_40": (
        '+    return (" where " + " AND ".join(clauses)) if clauses else "", params',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_43": (
        '+    return (" WHERE " + " and ".join(clauses)) if clauses else "", params',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_6": (
        '+        ("MODEL_ID", self.model_id),',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁFiltersǁwhere__mutmut_8": (
        '+        ("STATUS", self.status),',
        ("SQL keywords and identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ__init____mutmut_23": (
        '+        self._db.execute("pragma journal_mode=wal")',
        (
            "pragma names and values are case-insensitive in SQLite: the same pragma is set (journal_mode "
            "'wal' is checked)"
        ),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ__init____mutmut_24": (
        '+        self._db.execute("PRAGMA JOURNAL_MODE=WAL")',
        ("pragma names are case-insensitive in SQLite: the same pragma is set (journal_mode 'wal' is checked)"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ__init____mutmut_27": (
        '+        self._db.execute("pragma synchronous=full")',
        ("pragma names and values are case-insensitive in SQLite: synchronous is still 2 (checked)"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ__init____mutmut_28": (
        '+        self._db.execute("PRAGMA SYNCHRONOUS=FULL")',
        ("pragma names are case-insensitive in SQLite: synchronous is still 2 (checked)"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ__init____mutmut_31": (
        '+        self._db.execute("pragma foreign_keys=on")  # a verdict names an inspection that exists',
        ("pragma names and values are case-insensitive in SQLite: foreign_keys is still 1 (checked)"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ__init____mutmut_32": (
        '+        self._db.execute("PRAGMA FOREIGN_KEYS=ON")  # a verdict names an inspection that exists',
        ("pragma names are case-insensitive in SQLite: foreign_keys is still 1 (checked)"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ_migrate__mutmut_5": (
        '+    current = int(self._db.execute("pragma user_version").fetchone()[0])',
        ("pragma names are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ_migrate__mutmut_6": (
        '+    current = int(self._db.execute("PRAGMA USER_VERSION").fetchone()[0])',
        ("pragma names are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁ_rollback__mutmut_4": (
        '+            self._db.execute("rollback")',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁget__mutmut_10": (
        '+        row = self._db.execute("SELECT * FROM INSPECTIONS WHERE ID = ?", (inspection_id,)).fetchone()',
        ("SQL identifiers are case-insensitive in SQLite, and SELECT * returns the columns under their declared names"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁget__mutmut_9": (
        '+        row = self._db.execute("select * from inspections where id = ?", (inspection_id,)).fetchone()',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁintegrity_check__mutmut_4": (
        '+        return str(self._db.execute("pragma integrity_check").fetchone()[0])',
        ("pragma names are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁintegrity_check__mutmut_5": (
        '+        return str(self._db.execute("PRAGMA INTEGRITY_CHECK").fetchone()[0])',
        ("pragma names are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁiter_csv__mutmut_14": (
        (
            "+        sql = f\"SELECT * FROM inspections{where}{' an"
            "d' if where else ' WHERE'} id > ? ORDER BY id LIMIT ?\""
        ),
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁiter_csv__mutmut_16": (
        (
            "+        sql = f\"SELECT * FROM inspections{where}{' AN"
            "D' if where else ' where'} id > ? ORDER BY id LIMIT ?\""
        ),
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁiter_csv__mutmut_33": (
        '+        last = int(rows[-1]["ID"])',
        ("sqlite3.Row looks columns up by name case-insensitively: row['ID'] is row['id']"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_24": (
        '+        row = db.execute("select prediction from inspections where id = ?", (inspection_id,)).fetchone()',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_25": (
        '+        row = db.execute("SELECT PREDICTION FROM INSPECTIONS WHERE ID = ?", (inspection_id,)).fetchone()',
        (
            "SQL identifiers are case-insensitive in SQLite; the result column is read through sqlite3.Row, "
            "whose name lookup is case-insensitive"
        ),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_41": (
        (
            '+            "update inspections set verdict = ?, verdic'
            't_label = ?, verdict_utc = ?, comment = ?, operator = ? "'
        ),
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_42": (
        (
            '+            "UPDATE INSPECTIONS SET VERDICT = ?, VERDIC'
            'T_LABEL = ?, VERDICT_UTC = ?, COMMENT = ?, OPERATOR = ? "'
        ),
        ("SQL identifiers are case-insensitive in SQLite: the same columns are written"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_44": (
        '+            "where id = ?",',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_45": (
        '+            "WHERE ID = ?",',
        ("SQL identifiers are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_53": (
        '+            "insert into verdicts (inspection_id, verdict, label, operator, comment, created_utc) "',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_54": (
        '+            "INSERT INTO VERDICTS (INSPECTION_ID, VERDICT, LABEL, OPERATOR, COMMENT, CREATED_UTC) "',
        ("SQL identifiers are case-insensitive in SQLite: the same columns are written"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁset_verdict__mutmut_56": (
        '+            "values (?, ?, ?, ?, ?, ?)",',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁtally__mutmut_30": (
        "+            decided[prediction] = decided.get(None, 0) + n",
        (
            "only reached for status 'ok' with a prediction, and GROUP BY status, prediction gives each "
            "prediction a single 'ok' group (SQLite's binary string equality matches Python's), so decided "
            "never already holds that prediction: decided.get(prediction, 0) and decided.get(None, 0) are "
            "both 0"
        ),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁtally__mutmut_5": (
        '+        "group by status, prediction"',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁtally__mutmut_6": (
        '+        "GROUP BY STATUS, PREDICTION"',
        ("SQL identifiers are case-insensitive in SQLite: the same grouping"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁverdicts__mutmut_5": (
        '+    sql = "select * from verdicts where inspection_id = ? order by id"',
        ("SQL keywords are case-insensitive in SQLite: the same statement runs"),
    ),
    "defectlens.inspections.store.xǁInspectionLogǁverdicts__mutmut_6": (
        '+    sql = "SELECT * FROM VERDICTS WHERE INSPECTION_ID = ? ORDER BY ID"',
        ("SQL identifiers are case-insensitive in SQLite, and SELECT * returns the declared column names"),
    ),
    "defectlens.serve.auth.x_key_problem__mutmut_5": (
        '+    auth = authorization or "XXXX"',
        "the stand-in for a missing Authorization header is only tested for the 'bearer ' prefix, which"
        " neither '' nor 'XXXX' has",
    ),
    "defectlens.serve.auth.x__header__mutmut_11": (
        '+            return str(value.decode("LATIN-1"))',
        "Python's codec names are case-insensitive: 'LATIN-1' is the latin-1 codec",
    ),
    "defectlens.serve.batcher.xǁBatcherǁstart__mutmut_3": (
        "+    self._executor = ThreadPoolExecutor(max_workers=None, thread_name_prefix=self._name)",
        "max_workers=None (the default size): " + ANY_POOL,
    ),
    "defectlens.serve.batcher.xǁBatcherǁstart__mutmut_5": (
        "+    self._executor = ThreadPoolExecutor(thread_name_prefix=self._name)",
        "max_workers left at its default: " + ANY_POOL,
    ),
    **{
        f"defectlens.workflows.predict.xǁ_CsvSinkǁwrite__mutmut_{n}": (
            f"+    writer.writerow([csv_cell(row.get(c, {arg})) for c in self._columns])",
            "a column the row lacks reaches csv_cell as None instead of '', and csv_cell(None) is '' (its first"
            " rule): the same empty cell",
        )
        for n, arg in ((12, "None"), (14, ""))
    },
    "defectlens.workflows.predict.xǁ_CsvSinkǁwrite__mutmut_19": (
        '+    data = text.getvalue().encode("UTF-8")',
        "Python's codec names are case-insensitive: 'UTF-8' is the utf-8 codec, with the same strict errors",
    ),
}

#: mutmut's exit-code verdicts that count as caught
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", nargs="+", choices=list(TARGETS), default=list(TARGETS), help="modules to mutate")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (merged: other modules' entries kept)")
    p.add_argument("--work", type=Path, default=WORK, help="scratch folder, one copy of src/ and tests/ per module")
    p.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1: a shared machine)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one module's run may take")
    p.add_argument(
        "--summary-only",
        action="store_true",
        help="re-read the last run of each module in --work (after editing EQUIVALENT)",
    )
    return p


def workspace(name: str, target: Target, work: Path) -> Path:
    """``work/name``: a fresh copy of src/, tests/, README.md and pyproject.toml, with mutmut's settings appended."""
    folder = work / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, folder / part, ignore=ignore)
    shutil.copy2(ROOT / "README.md", folder / "README.md")  # tests that hold the README to the code read it
    settings = {
        "source_paths": ["src"],
        "only_mutate": [target.source],
        "pytest_add_cli_args_test_selection": list(target.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
        # one fork server that imports pytest once: forking the process that ran the tests (torch and
        # ONNX Runtime thread pools started) left mutants hanging until their CPU limit
        "process_isolation": "forkserver",
        # mutmut runs the tests in its own mutants/ copy: a service test holds the README's error names to the API's
        "also_copy": ["README.md"],
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (folder / "pyproject.toml").write_text(text + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return folder


def mutant_diff(folder: Path, mutant: str) -> list[str]:
    """The changed lines of one mutant (``mutmut show``), without the file headers."""
    shown = subprocess.run([str(MUTMUT), "show", mutant], cwd=folder, capture_output=True, text=True, timeout=300)
    return [
        line
        for line in shown.stdout.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()
    ]


def verdicts(folder: Path, target: Target) -> dict[str, str]:
    """mutant name -> mutmut's verdict, from the run's ``.meta`` file (only the selected functions)."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((folder / "mutants" / (target.source + ".meta")).read_text(encoding="utf-8"))
    patterns = [re.compile(p.replace(".", r"\.").replace("*", ".*") + "$") for p in target.functions]
    return {
        key: status_by_exit_code[code]
        for key, code in meta["exit_code_by_key"].items()
        if not patterns or any(p.match(key) for p in patterns)
    }


def summarise(folder: Path, target: Target, seconds: float | None, returncode: int | None) -> dict[str, Any]:
    status = verdicts(folder, target)
    counts: dict[str, int] = {}
    for verdict in status.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    survivors, equivalent = [], []
    for mutant in sorted(m for m, v in status.items() if v not in CAUGHT):
        diff = mutant_diff(folder, mutant)
        known = EQUIVALENT.get(mutant)
        if known is not None and known[0] in diff:
            equivalent.append({"mutant": mutant, "diff": diff, "why": known[1]})
        else:
            survivors.append({"mutant": mutant, "verdict": status[mutant], "diff": diff})
    caught = sum(1 for v in status.values() if v in CAUGHT)
    scored = len(status) - len(equivalent)
    return {
        "source": target.source,
        "tests": list(target.tests),
        "functions": list(target.functions) or "all",
        "mutants": len(status),
        "verdicts": counts,
        "caught": caught,
        "equivalent": equivalent,
        "score": round(caught / scored, 3) if scored else None,
        "survivors": survivors,
        "seconds": None if seconds is None else round(seconds, 1),  # None: the run's time was not recorded
        "mutmut_exit_code": returncode,
    }


def run_module(name: str, args: argparse.Namespace) -> dict[str, Any]:
    target = TARGETS[name]
    folder = workspace(name, target, args.work)
    cmd = [str(MUTMUT), "run", "--max-children", str(args.max_children), *target.functions]
    # one thread per math library: the two cores are shared, and each mutant is its own process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    with (folder / "mutmut.log").open("w") as log:
        done = subprocess.run(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=args.timeout)
    return summarise(folder, target, time.monotonic() - start, done.returncode)


def main(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from machine import describe

    results = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    results.setdefault("modules", {})
    if not args.summary_only:
        results.update(
            {
                "tool": f"mutmut {version('mutmut')}",
                "command": "make mutation (.venv/bin/python benchmarks/bench_mutation.py --modules ...)",
                "score": "caught (killed, timeout or crash) / (mutants - equivalent); 'no tests' counts as survived",
                "machine": describe(),
            }
        )
    for name in args.modules:
        if args.summary_only:
            if not (args.work / name / "mutants").is_dir():
                continue
            # a module first run by hand (mutmut run in its folder) has no earlier entry: no recorded time
            old = results["modules"].get(name) or {
                "seconds": None,
                "mutmut_exit_code": None,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            entry = summarise(args.work / name, TARGETS[name], old["seconds"], old["mutmut_exit_code"])
            entry["finished"] = old["finished"]
        else:
            print(f"mutating {TARGETS[name].source} ...", flush=True)
            entry = run_module(name, args)
            entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results["modules"][name] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(
            f"  {name}: score {entry['score']} ({entry['caught']}/{entry['mutants']} caught, "
            f"{len(entry['survivors'])} survived, {len(entry['equivalent'])} equivalent) in {entry['seconds']} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
