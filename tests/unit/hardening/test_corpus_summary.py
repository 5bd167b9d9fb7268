"""The corpus as a whole: every item of issue #18 has cases, and how many, so none is lost silently."""

from __future__ import annotations

from tests.unit.hardening import (
    corpus,
    test_bundle_corpus,
    test_exit_codes,
    test_import_corpus,
    test_predict_corpus,
    test_resume_corpus,
)

#: issue item -> the generated cases that cover it (each one asserted in its own test module)
COVERAGE = {
    "1 batch always writes its CSV": ["lab_tiff"],
    "2 rich prints user strings as they are": ["bracket_names"],
    "3 folder walking (predict and import)": [*corpus.WALK_PROBLEMS, *(f"folder_{k}" for k in corpus.WALK_PROBLEMS)],
    "4 decoding": [*sorted(test_predict_corpus.FILE_CASES), "png16_64mpx", "huge_jpeg", "unreadable_file"],
    "5 bundles": sorted(corpus.BUNDLES),
    "6 data import": [k for k in corpus.IMPORTS if not k.startswith("folder_") or k == "folder_control_char_class"]
    + ["hash_in_chunks", "allow_outside_root"],
    "7 data split": sorted(test_import_corpus.SPLITS),
    "8 train --resume": [*sorted(test_resume_corpus.CASES), "fsync_before_rename", "previous_digest_kept"],
    "9 what a bundle gives away": ["spec_json_without_absolute_paths"],
    "10 exit codes": [*sorted(test_exit_codes.BAD_INPUT), "usage", "internal_error_3", "interrupt_130", "predict_0_1"],
}


def test_every_item_has_cases_and_the_count_is_known():
    counts = {item: len(cases) for item, cases in COVERAGE.items()}
    assert all(counts.values()), counts
    assert counts == {
        "1 batch always writes its CSV": 1,
        "2 rich prints user strings as they are": 1,
        "3 folder walking (predict and import)": 12,
        "4 decoding": 19,
        "5 bundles": 31,
        "6 data import": 11,
        "7 data split": 5,
        "8 train --resume": 9,
        "9 what a bundle gives away": 1,
        "10 exit codes": 17,
    }
    assert sum(counts.values()) == 107
    assert set(test_predict_corpus.FOLDER_CASES) == {"lab_tiff", "bracket_names", *corpus.WALK_PROBLEMS}
    assert len(test_bundle_corpus.__doc__ or "") > 0
