"""The drift watch: a slow brightness ramp alarms, a stationary stream does not, one alarm per episode,
a model change starts over; the statistics (PSI, exact binomial tests) on fixed cases; the reference an
export writes, and what an old bundle is watched on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import STATS, GateProfile, profile_problems
from defectlens.inference.drift import (
    NEEDS_REVIEW,
    OOD,
    DriftConfig,
    DriftWatch,
    Reference,
    binomial_below,
    binomial_two_sided,
    outcome_of,
    psi,
    ref_bins,
    reference_of,
)

SHARES = {"ok": 0.6, "defect": 0.39, NEEDS_REVIEW: 0.01}


def draw(rng: np.random.Generator, n: int, *, offset: float = 0.0) -> list[dict[str, float]]:
    """``n`` frames' statistics; ``offset`` grey levels added to the brightness (a lamp's drift)."""
    return [
        {
            "brightness": float(rng.normal(120.0, 10.0)) + offset,
            "contrast": float(rng.normal(50.0, 5.0)),
            "dark_share": float(rng.uniform(0.0, 0.05)),
            "bright_share": float(rng.uniform(0.0, 0.02)),
            "sharpness": float(rng.gamma(9.0, 1.0)),
            "noise": float(rng.gamma(4.0, 0.5)),
        }
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(1)
    frames = draw(rng, 3000)
    bins = {k: ref_bins(np.asarray([f[k] for f in frames])) for k in STATS}
    bins[OOD] = ref_bins(rng.gamma(2.0, 0.3, 3000))
    return Reference(bins=bins, decisions=SHARES, accuracy=0.98, images=1000)


def stream(watch: DriftWatch, rng: np.random.Generator, n: int, *, ramp: tuple[float, float] = (0.0, 0.0)):
    """Feed ``n`` frames whose brightness offset goes linearly from ramp[0] to ramp[1]; returns the events."""
    events = []
    outcomes = rng.choice(list(SHARES), size=n, p=list(SHARES.values()))
    for i in range(n):
        offset = ramp[0] + (ramp[1] - ramp[0]) * i / max(1, n - 1)
        (stats,) = draw(rng, 1, offset=offset)
        event = watch.observe(stats=stats, ood_score=float(rng.gamma(2.0, 0.3)), outcome=str(outcomes[i]))
        if event is not None:
            events.append((i, event))
    return events


def test_a_stationary_stream_never_alarms(reference) -> None:
    watch = DriftWatch(reference, model_id="m")
    assert stream(watch, np.random.default_rng(2), 3000) == []
    status = watch.status()
    assert status.filled == 100 and status.images == 3000 and not status.alarm and status.alarms == 0
    assert {c.name for c in status.checks} == {*STATS, OOD, *(f"share:{k}" for k in SHARES)}
    assert status.severity < 1.0


def test_a_slow_brightness_ramp_alarms_once_before_it_ends(reference) -> None:
    watch = DriftWatch(reference, model_id="m")
    events = stream(watch, np.random.default_rng(3), 1000, ramp=(0.0, 30.0))  # 3 sigma at the end
    assert [e.kind for _, e in events] == ["drift_alarm"]  # raised once, though the ramp goes on
    at, event = events[0]
    assert 100 <= at < 999 and "brightness PSI" in event.text and event.model_id == "m"
    assert watch.status().alarm and watch.alarms == 1


def test_hysteresis_clears_after_the_episode_and_raises_the_next(reference) -> None:
    rng = np.random.default_rng(4)
    watch = DriftWatch(reference, model_id="m")
    first = stream(watch, rng, 300, ramp=(40.0, 40.0))
    back = stream(watch, rng, 300)
    second = stream(watch, rng, 300, ramp=(-40.0, -40.0))
    assert [e.kind for _, e in first] == ["drift_alarm"]
    assert [e.kind for _, e in back] == ["drift_cleared"] and back[0][0] >= 50  # the window must turn over first
    assert [e.kind for _, e in second] == ["drift_alarm"]
    assert watch.alarms == 2


def test_decision_shares_and_operator_agreement_alarm_on_their_own(reference) -> None:
    watch = DriftWatch(reference, model_id="m")
    rng = np.random.default_rng(5)
    events = []
    for stats in draw(rng, 200):  # image statistics as validated, but the gate refuses one frame in five
        outcome = NEEDS_REVIEW if rng.random() < 0.2 else "ok"
        events.append(watch.observe(stats=stats, ood_score=float(rng.gamma(2.0, 0.3)), outcome=outcome))
    alarms = [e for e in events if e is not None]
    assert len(alarms) == 1 and "share" not in alarms[0].text and "needs_review" in alarms[0].text
    quiet = DriftWatch(reference, model_id="m")
    found = [quiet.verdict(agreed=i % 4 != 0) for i in range(40)]  # operators overrule one decision in four
    assert [e.kind for e in found if e is not None] == ["drift_alarm"]
    assert "operators agreed" in next(e for e in found if e is not None).text


def test_errors_and_missing_values_are_not_counted(reference) -> None:
    watch = DriftWatch(reference, model_id="m")
    for _ in range(150):
        watch.observe(stats=None, ood_score=float("nan"), outcome=None)
    status = watch.status()
    assert status.images == 150 and status.filled == 0 and status.checks == ()
    assert outcome_of("error", None, None) is None and outcome_of("dropped", None, None) is None
    assert outcome_of("ok", "defect", True) == NEEDS_REVIEW and outcome_of("ok", "defect", False) == "defect"
    assert outcome_of("needs_review", None, True) == NEEDS_REVIEW


def test_the_statistics_on_fixed_cases() -> None:
    shares = np.full(10, 0.1)
    assert psi(np.full(10, 10), shares) == pytest.approx(0.0, abs=1e-12)
    moved = np.array([0, 0, 0, 0, 0, 20, 20, 20, 20, 20])
    a = (moved + 0.5) / 105.0
    assert psi(moved, shares) == pytest.approx(float(np.sum((a - 0.1) * np.log(a / 0.1))), rel=1e-12)
    assert binomial_two_sided(5, 10, 0.5) == pytest.approx(1.0)
    assert binomial_two_sided(0, 10, 0.5) == pytest.approx(2 / 1024)
    assert binomial_below(0, 10, 0.5) == pytest.approx(1 / 1024)
    assert binomial_below(9, 10, 0.9) == pytest.approx(1 - 0.9**10)
    tied = ref_bins(np.array([0.0] * 60 + list(np.linspace(0.1, 1.0, 40))))
    assert all(s > 0 for s in tied.shares) and math.isclose(sum(tied.shares), 1.0)
    assert len(tied.shares) == len(tied.edges) + 1 and tied.shares[0] == pytest.approx(0.6)


def test_a_bad_configuration_names_the_value() -> None:
    with pytest.raises(DefectlensError, match="window 5"):
        DriftConfig(window=5)
    with pytest.raises(DefectlensError, match="clear_ratio"):
        DriftConfig(clear_ratio=0.0)


def test_export_writes_the_drift_reference_and_the_profile_round_trips(gated_bundle) -> None:
    from defectlens.core.bundle import read_bundle

    profile = read_bundle(gated_bundle).profile
    assert profile is not None and profile.drift is not None
    d = profile.drift
    assert set(d.bins) == {*STATS, OOD} and d.images > 0
    assert set(d.decisions) == {"ok", "defect", NEEDS_REVIEW} and sum(d.decisions.values()) == pytest.approx(1.0)
    assert all(math.isclose(sum(b.shares), 1.0) for b in d.bins.values())
    again = GateProfile.from_dict(profile.to_dict())
    assert again == profile
    broken = profile.to_dict()
    broken["drift"]["bins"]["brightness"]["shares"][0] += 0.5
    assert any("drift.bins.brightness" in p for p in profile_problems(broken))
    old = profile.to_dict()
    del old["drift"]  # a bundle exported before the drift reference stays valid
    assert profile_problems(old) == [] and GateProfile.from_dict(old).drift is None


def test_an_old_bundle_is_watched_on_what_its_profile_holds(gated_bundle) -> None:
    from dataclasses import replace

    from defectlens.core.bundle import read_bundle

    profile = read_bundle(gated_bundle).profile
    assert profile is not None
    old = reference_of(replace(profile, drift=None), accuracy=0.9, validation_images=50)
    assert all(len(b.shares) == 3 for b in old.bins.values()) and OOD in old.bins
    assert old.decisions == {} and any("decision shares" in u for u in old.unavailable)
    none = reference_of(None)
    assert none.bins == {} and any("operator agreement" in u for u in none.unavailable)


def test_the_watch_follows_the_model_id_and_starts_over(gated_bundle, bundle, tiny_dataset) -> None:
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    gated = Predictor.load(gated_bundle, threads=1)
    other = Predictor.load(bundle, threads=1)
    manifest = Manifest.read(tiny_dataset)
    files = [str(manifest.resolve(r)) for r in manifest.split("train")]
    watch = DriftWatch.for_predictor(gated, DriftConfig(window=10, min_verdicts=5))
    for p in gated.predict_many(files * 2, batch_size=8):
        watch.observe_prediction(p)
    before = watch.status()
    assert before.images == 2 * len(files) and before.filled == 10 and before.checks
    assert not watch.follow(gated)  # the same model: nothing changes
    assert watch.follow(other) and watch.model_id == other.model_id
    after = watch.status()
    assert after.images == 0 and after.checks == () and not after.alarm
    assert any("no reference profile" in u for u in after.unavailable)
