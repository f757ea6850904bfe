"""Calibration: shape sampling, the fits, and `a3cs calibrate-cpu` end to end (real timing on
a tiny grid; no accuracy is asserted, since it depends on the machine's load)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a3cs.cli import main
from accelerator_model.cpu import (
    FAMILIES,
    FAMILY_TERMS,
    REFERENCE_PROFILE,
    CpuProfile,
    estimate_layers,
    kernel_family,
    load_cpu_profile,
)
from accelerator_model.cpu_calibrate import (
    TreeGrid,
    TreeSettings,
    calibration_shapes,
    fit_coefficients,
    fit_residuals,
    reference_layers,
    score,
)

# The fits are checked on the shipped reference profile, not on `host`: the host's caches
# decide which synthetic shapes are "slow" below, so a host spec would make the data, and the
# outcome, depend on the machine the tests run on.
REFERENCE = load_cpu_profile(str(REFERENCE_PROFILE))
SPEC = REFERENCE.spec


def test_shapes_cover_every_family_and_hold_out_fresh_ones() -> None:
    train, held = calibration_shapes(12, 3, seed=5)
    again_train, again_held = calibration_shapes(12, 3, seed=5)
    assert [la.model_dump() for la in train] == [la.model_dump() for la in again_train]
    assert [la.model_dump() for la in held] == [la.model_dump() for la in again_held]
    families = [kernel_family(la) for la in train]
    for family in FAMILIES:
        assert families.count(family) >= 12
        assert sum(kernel_family(la) == family for la in held) == 3
    seen = {repr(la.model_dump(exclude={"name"})) for la in train}
    assert not any(repr(la.model_dump(exclude={"name"})) in seen for la in held)
    assert {la.name for la in reference_layers()} <= {la.name for la in train}
    assert max(la.batch for la in train + held) <= 8


def test_fit_recovers_known_coefficients() -> None:
    spec = SPEC
    train, _ = calibration_shapes(25, 1, seed=1)
    rng = np.random.default_rng(0)
    truth = {f: {t: float(rng.uniform(0.5, 3.0)) * (1e4 if t == "call" else 1.0)
                 for t in FAMILY_TERMS[f]} for f in FAMILIES}
    latency = np.array([e.analytic_s for e in estimate_layers(
        train, CpuProfile(spec=spec, coefficients=truth))])
    fitted = fit_coefficients(train, latency, spec)
    refit = np.array([e.analytic_s for e in estimate_layers(
        train, CpuProfile(spec=spec, coefficients=fitted))])
    # Exact data: the fit reproduces every latency (coefficients themselves may trade off
    # where two terms are nearly collinear on the grid).
    np.testing.assert_allclose(refit, latency, rtol=1e-3)
    assert score(refit, latency, [kernel_family(la) for la in train]).within_10pct == 1.0


SMALL_GRID = TreeGrid(depths=(2, 3), min_leaves=(3,), counts=(20, 60), folds=4, min_rows=10)


@pytest.mark.slow
def test_residual_trees_learn_a_systematic_error() -> None:
    spec = SPEC
    train, _ = calibration_shapes(20, 1, seed=2)
    truth = np.array([e.analytic_s for e in estimate_layers(train, REFERENCE)])
    # "Measured": 30 % slower whenever the stored weights overflow the L1 cache, a step no
    # additive work term describes; the additive model is fitted to it as in a calibration.
    slow = np.array([la.stored_weight_words * 4 > spec.l1d_kib * 1024 for la in train])
    measured = truth * np.where(slow, 1.3, 1.0)
    profile = CpuProfile(spec=spec, coefficients=fit_coefficients(train, measured, spec))
    analytic = np.array([e.analytic_s for e in estimate_layers(train, profile)])
    residuals, chosen = fit_residuals(train, measured, analytic, spec, grid=SMALL_GRID,
                                      workers=1)
    corrected = profile.model_copy(update={"residuals": residuals})
    predicted = np.array([e.latency_s for e in estimate_layers(train, corrected)])
    families = [kernel_family(la) for la in train]
    assert score(analytic, measured, families).within_10pct < 0.9
    assert score(predicted, measured, families).within_10pct > 0.95
    # Cross-validation never keeps a model that scores below the additive one, and chose
    # trees for most families in which both kinds of shapes occur.
    mixed = [f for f in FAMILIES if len({s for s, g in zip(slow, families, strict=True)
                                         if g == f}) > 1]
    assert all(c.cv_within_10pct >= c.cv_additive_within_10pct for c in chosen.values())
    assert sum(chosen[f].settings.trees > 0 for f in mixed) > len(mixed) / 2


def test_cross_validation_keeps_an_additive_model_that_needs_no_trees() -> None:
    # Latencies that are exactly additive (known coefficients): every fold's additive fit
    # reproduces them, so trees cannot do better and the simplest candidate, none, is kept.
    spec = SPEC
    train, _ = calibration_shapes(20, 1, seed=4)
    profile = REFERENCE
    exact = np.array([e.analytic_s for e in estimate_layers(train, profile)])
    residuals, chosen = fit_residuals(train, exact, exact, spec, grid=SMALL_GRID, workers=1)
    assert residuals == {}
    assert {c.settings.trees for c in chosen.values()} == {0}
    assert all(c.cv_within_10pct == 1.0 for c in chosen.values())
    # Given settings are used as they are, without cross-validation.
    given = {f: TreeSettings(trees=5 if f == "linear" else 0, max_depth=2) for f in FAMILIES}
    residuals, chosen = fit_residuals(train, exact * 1.2, exact, spec, settings=given,
                                      grid=SMALL_GRID)
    assert list(residuals) == ["linear"] and len(residuals["linear"].value) == 5
    assert chosen == {}


@pytest.mark.slow
def test_calibrate_cpu_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profile.json"
    argv = ["calibrate-cpu", "--out", str(out), "--per-family", "20", "--held-out", "1",
            "--rounds", "2", "--samples", "1", "--no-residual"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "held-out shapes within +-10 % of measured" in text and "load average" in text
    profile = load_cpu_profile(str(out))
    assert profile.calibration is not None and profile.calibration.held_out_shapes == 11
    assert profile.spec.memory_bandwidth_gbs > 0.1
    for name in ("profile_measurements.json", "profile_heldout.csv", "profile_fit.png",
                 "profile_fit.svg"):
        assert (tmp_path / name).stat().st_size > 0
    rows = (tmp_path / "profile_heldout.csv").read_text().splitlines()
    assert len(rows) == 1 + 11

    # A killed run resumes from its last saved round: drop the last round, resume, and only
    # that round is timed again; the rest of the measurements are kept as they were.
    state_path = tmp_path / "profile_measurements.json"
    state = json.loads(state_path.read_text())
    kept = state["rounds"][:-1]
    state["rounds"] = kept
    state_path.write_text(json.dumps(state))
    # An unfinished file cannot be refitted.
    assert main(["calibrate-cpu", "--out", str(out), "--refit"]) == 2
    assert "1 of 2 rounds" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    resumed = json.loads(state_path.read_text())
    assert resumed["rounds"][:-1] == kept and len(resumed["rounds"]) == 2
    assert resumed["calls"] == state["calls"]

    # Refitting from the finished measurements times nothing and gives the same profile.
    before = load_cpu_profile(str(out))
    assert main(["calibrate-cpu", "--out", str(out), "--refit", "--no-residual"]) == 0
    assert load_cpu_profile(str(out)).coefficients == before.coefficients

    # Resuming with other measurement options is refused before any timing; fitting without
    # the trees changes no measurement and is allowed.
    other = [a if argv[i - 1] != "--rounds" else "3" for i, a in enumerate(argv)]
    assert main([*other, "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv[:-1], "--refit"]) == 0
