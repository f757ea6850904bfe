"""The CPU latency model: families, work terms, presets, profiles and their bad inputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from a3cs.cli import main
from a3cs_common.errors import ConfigError
from a3cs_common.schema import validate
from accelerator_model.cpu import (
    DESCRIPTORS,
    FAMILIES,
    FAMILY_TERMS,
    PRESETS,
    TERMS,
    CpuProfile,
    CpuSpec,
    ResidualTrees,
    descriptors,
    detect_host,
    estimate_cpu,
    estimate_layers,
    kernel_family,
    latency_table,
    layer_latency_s,
    load_cpu_profile,
    save_cpu_profile,
    work_terms,
)
from accelerator_model.cpu_calibrate import export_trees
from hw_sim.files import load_workload
from hw_sim.workload import Conv2d, Linear


def _conv(**kw) -> Conv2d:
    base = dict(name="c", in_channels=16, out_channels=32, in_height=10, in_width=10,
                kernel_size=3)
    return Conv2d.model_validate({**base, **kw})


def _fc(**kw) -> Linear:
    return Linear.model_validate({"name": "f", "in_features": 1024, "out_features": 128, **kw})


@pytest.fixture(scope="module")
def a76() -> CpuProfile:
    return load_cpu_profile("cortex-a76")


def test_families_follow_the_kernels_code_paths() -> None:
    assert kernel_family(_fc()) == "linear"
    assert kernel_family(_conv()) == "conv_im2col"  # 3x3, batch 1, small input: im2col
    assert kernel_family(_conv(kernel_size=5)) == "conv_onednn"
    assert kernel_family(_conv(batch=2)) == "conv_onednn"
    assert kernel_family(_conv(in_channels=32, groups=32)) == "conv_depthwise"
    assert kernel_family(_conv(groups=4)) == "conv_grouped"
    assert kernel_family(_fc(weight_format={"type": "one_by_n", "n": 4, "density": 0.5})) \
        == "bsr_linear"
    assert kernel_family(_conv(weight_format={"type": "one_by_n", "n": 1, "density": 0.5})) \
        == "csr_conv"
    assert kernel_family(_conv(weight_format={"type": "block_circulant", "block_size": 8})) \
        == "fft_conv"
    # More threads make torch send even a plain 1x1 convolution to oneDNN.
    assert kernel_family(_conv(kernel_size=1), threads=1) == "conv_im2col"
    assert kernel_family(_conv(kernel_size=1, batch=2), threads=2) == "conv_onednn"


def test_work_terms_are_seconds_and_only_the_familys() -> None:
    spec = CpuSpec(name="t", cores=1, simd_bits=128, fma_per_cycle=1, frequency_ghz=1.0,
                   l1d_kib=32, l2_kib=256, memory_bandwidth_gbs=10)
    layer = _fc()
    x = dict(zip(TERMS, work_terms(layer, spec), strict=True))
    assert x["call"] == pytest.approx(1e-9)  # one cycle at 1 GHz
    # 1024 x 128 MACs at 4 lanes x 1 FMA per cycle x 1 GHz.
    assert x["simd_macs"] == pytest.approx(1024 * 128 / 4e9)
    assert x["out_elements"] == pytest.approx(128e-9)
    for term, value in x.items():
        assert (value != 0) <= (term in FAMILY_TERMS["linear"])


def test_work_terms_follow_the_kernels_copies_and_layouts() -> None:
    spec = CpuSpec(name="t", cores=1, simd_bits=512, fma_per_cycle=1, frequency_ghz=1.0,
                   l1d_kib=32, l2_kib=1024, memory_bandwidth_gbs=10)

    def terms(layer: Conv2d) -> dict[str, float]:
        return {t: v * 1e9 for t, v in zip(TERMS, work_terms(layer, spec), strict=True)}

    # torch's im2col: 16 channels x 9 taps x 5 output rows, each row one copy; padded and
    # strided, so the rows need border memsets and the elements are gathered one by one.
    x = terms(_conv(stride=2, padding=1))
    assert x["im2col_rows"] == pytest.approx(16 * 9 * 5)
    assert x["im2col_padded_rows"] == pytest.approx(16 * 9 * 5)
    assert x["im2col"] == x["im2col_strided"] == pytest.approx(16 * 9 * 25)
    # torch reads a plain 1x1 conv in place; F.unfold (the sparse kernels) still copies it,
    # and copies a batch's columns once more.
    assert all(terms(_conv(kernel_size=1))[t] == 0 for t in ("im2col", "im2col_rows"))
    sparse = terms(_conv(kernel_size=1, batch=2,
                         weight_format={"type": "one_by_n", "n": 1, "density": 0.5}))
    assert sparse["im2col"] == sparse["im2col_copy"] == pytest.approx(2 * 16 * 100)
    assert sparse["batched_call"] == pytest.approx(1)
    # oneDNN's grouped kernels: a blocked direct conv (no im2col, vectors `block` wide, a
    # reorder's fixed cost) when the channels per group share a block, else im2col + GEMM.
    macs = 16 * 16 * 9 * 100 / 16  # per group MACs x groups at 16 lanes x 1 GHz, ns
    blocked = terms(_conv(in_channels=64, out_channels=64, groups=4, padding=1))
    assert blocked["reorders"] == pytest.approx(1) and blocked["im2col"] == 0
    assert blocked["simd_macs"] == pytest.approx(4 * macs)
    by_four = terms(_conv(in_channels=16, out_channels=16, groups=4, padding=1))
    assert by_four["simd_macs"] == pytest.approx(4 * 4 * 4 * 9 * 100 / 16 * 4)
    gemm = terms(_conv(in_channels=24, out_channels=48, groups=4, padding=1))
    assert gemm["reorders"] == 0 and gemm["im2col_rows"] == pytest.approx(24 * 9 * 10)


def test_latency_grows_with_work(a76: CpuProfile) -> None:
    for make in (lambda c: _conv(out_channels=c), lambda c: _fc(out_features=c),
                 lambda c: _fc(out_features=c, weight_format={"type": "block_circulant",
                                                               "block_size": 8})):
        latencies = [layer_latency_s(make(c), a76) for c in (16, 64, 256, 1024)]
        assert all(a < b for a, b in itertools.pairwise(latencies)), latencies
    dense_bsr = [layer_latency_s(_fc(weight_format={"type": "one_by_n", "n": 4, "density": d}),
                                 a76) for d in (0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in itertools.pairwise(dense_bsr)), dense_bsr


def test_a_faster_cpu_is_faster() -> None:
    a7, a76 = load_cpu_profile("cortex-a7"), load_cpu_profile("cortex-a76")
    workload = load_workload("experiments/workloads/minatar_reference.yaml")
    slow, fast = estimate_cpu(workload, a7), estimate_cpu(workload, a76)
    assert slow.latency_s > fast.latency_s
    for s, f in zip(slow.layers, fast.layers, strict=True):
        assert s.latency_s > f.latency_s > 0
    assert fast.fps == pytest.approx(1 / fast.latency_s)
    assert fast.latency_s == pytest.approx(sum(e.latency_s for e in fast.layers))


def test_every_preset_loads() -> None:
    for name in PRESETS:
        profile = load_cpu_profile(name)
        assert set(profile.coefficients) == set(FAMILIES)
        assert profile.residuals == {}


def test_host_spec_reads_this_machine() -> None:
    spec = detect_host(memory_bandwidth_gbs=12.0)
    assert spec.cores >= 1 and spec.frequency_ghz > 0 and spec.l1d_kib > 0
    assert spec.simd_bits in (128, 256, 512)
    assert spec.memory_bandwidth_gbs == 12.0


def test_latency_table_and_single_calls_agree(a76: CpuProfile) -> None:
    layers = [_conv(), _fc(), _fc(weight_format={"type": "one_by_n", "n": 2, "density": 0.5}),
              _conv(weight_format={"type": "block_circulant", "block_size": 4}),
              _conv(in_channels=32, out_channels=32, groups=32)]
    table = latency_table(layers, a76)
    assert table.shape == (len(layers),)
    np.testing.assert_allclose(table.numpy(), [layer_latency_s(la, a76) for la in layers])
    assert latency_table([], a76).shape == (0,)


def test_residual_trees_evaluate_like_sklearn() -> None:
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(DESCRIPTORS)))
    y = np.sin(x[:, 0]) + x[:, 3] * x[:, 5]
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3, learning_rate=0.1,
                                      random_state=0).fit(x, y)
    trees = export_trees(model, x[:1])
    probe = rng.normal(size=(50, len(DESCRIPTORS)))
    np.testing.assert_allclose(trees.predict(probe), model.predict(probe), rtol=1e-9, atol=1e-9)


def test_profile_round_trip_keeps_every_prediction(tmp_path: Path, a76: CpuProfile) -> None:
    layer = _fc(weight_format={"type": "one_by_n", "n": 4, "density": 0.5})
    x = descriptors(layer, a76.spec, 1e-5)
    stump = ResidualTrees(offset=0.1, learning_rate=0.5, feature=((DESCRIPTORS.index("density"),
                                                                   -1, -1),),
                          threshold=((float(x[DESCRIPTORS.index("density")]) + 0.1, 0, 0),),
                          left=((1, 0, 0),), right=((2, 0, 0),), value=((0, 0.4, -0.4),))
    profile = a76.model_copy(update={"residuals": {"bsr_linear": stump}})
    path = save_cpu_profile(profile, tmp_path / "p.json")
    loaded = load_cpu_profile(str(path))
    assert loaded == profile
    estimate = estimate_layers([layer], loaded)[0]
    # offset + 0.5 * 0.4: the density descriptor is below the split, so the left leaf.
    assert estimate.latency_s == pytest.approx(estimate.analytic_s * np.exp(0.1 + 0.2))


# --------------------------------------------------------------------------------------------
# bad input


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cortex-a7, cortex-a76, host"):
        load_cpu_profile("pentium")


@pytest.mark.parametrize("text, field", [
    ("{not json", "--cpu"),
    ('["a list"]', "--cpu"),
])
def test_unreadable_profile_file(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_cpu_profile(str(path))
    assert err.value.field == field and "\n" not in str(err.value)


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="existing"):
        load_cpu_profile(str(tmp_path / "nope.json"))


def _profile_dict(a76: CpuProfile) -> dict:
    return a76.model_dump(mode="json")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["coefficients"].pop("linear"), "coefficients"),
    (lambda d: d["coefficients"]["linear"].update(call=-1.0), "coefficients.linear.call"),
    (lambda d: d["coefficients"]["linear"].update(blocks=1.0), "coefficients.linear.blocks"),
    (lambda d: d["spec"].update(threads=99), "spec.threads"),
    (lambda d: d["spec"].update(simd_bits=100), "spec.simd_bits"),
    (lambda d: d["spec"].update(frequncy_ghz=2.0), "spec"),
    (lambda d: d.update(residuals={"linear": {"offset": 0, "learning_rate": 1,
                                              "feature": [[0]], "threshold": [[0]],
                                              "left": [[5]], "right": [[6]], "value": [[0]]}}),
     "residuals.linear"),
])
def test_invalid_profile_fields(tmp_path: Path, a76: CpuProfile, mutate, field: str) -> None:
    data = _profile_dict(a76)
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_cpu_profile(str(path))
    assert err.value.field.startswith(field), err.value
    assert "\n" not in str(err.value)


def test_invalid_spec_values() -> None:
    with pytest.raises(ConfigError, match="at most cores=2") as err:
        validate(CpuSpec, dict(name="x", cores=2, threads=4, simd_bits=128, fma_per_cycle=1,
                               frequency_ghz=1, l1d_kib=32, l2_kib=256, memory_bandwidth_gbs=5))
    assert err.value.field == "threads"


@pytest.mark.parametrize("argv, flag", [
    (["--per-family", "3"], "--per-family"),
    (["--held-out", "0"], "--held-out"),
    (["--threads", "0"], "--threads"),
    (["--threads", "999"], "--threads"),
    (["--rounds", "0"], "--rounds"),
    (["--samples", "-1"], "--samples"),
    (["--out", "profile.yaml"], "--out"),
    (["--out", "{tmp}/a_file/profile.json"], "--out"),
])
def test_bad_calibrate_cpu_values_exit_2(argv: list[str], flag: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["calibrate-cpu", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"a3cs calibrate-cpu: error: {flag}:") and "\n" not in err


@pytest.mark.parametrize("argv", [["--per-family", "many"], ["--resume", "--refit"],
                                  ["--rounds"]])
def test_calibrate_cpu_unparsable_flags_exit_2(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate-cpu", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("a3cs calibrate-cpu: error:") and "\n" not in err


def test_refit_without_measurements_exit_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate-cpu", "--refit", "--out", str(tmp_path / "p.json")]) == 2
    assert "--refit" in capsys.readouterr().err
    (tmp_path / "q_measurements.json").write_text('{"config": {"per_family": 1}}')
    assert main(["calibrate-cpu", "--refit", "--out", str(tmp_path / "q.json")]) == 2
    assert "a3cs calibrate-cpu" in capsys.readouterr().err
