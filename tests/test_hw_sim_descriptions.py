"""Workload and hardware descriptions: loading, derived sizes, SCALE-Sim files, tracing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from a3cs_common.errors import ConfigError
from a3cs_common.io import dump_yaml
from a3cs_common.schema import validate
from hw_sim.files import load_hardware, load_workload
from hw_sim.hardware import Hardware, sram_pj_per_byte
from hw_sim.scalesim_files import load_scalesim_cfg, load_topology_csv
from hw_sim.torch_trace import workload_from_module
from hw_sim.workload import Conv2d, Linear, Workload


def test_minatar_reference_shapes(repo):
    workload = load_workload(str(repo / "experiments/workloads/minatar_reference.yaml"))
    conv, fc, _, _ = workload.layers
    assert (conv.out_height, conv.out_width) == (8, 8)
    assert (conv.gemm_m, conv.gemm_n, conv.gemm_k) == (64, 16, 36)
    assert (fc.gemm_m, fc.gemm_n, fc.gemm_k) == (1, 128, 1024)
    assert workload.dense_macs == 64 * 16 * 36 + 1024 * 128 + 128 * 3 + 128


def test_workload_yaml_round_trip(repo, tmp_path):
    for name in ("minatar_reference", "minatar_block_circulant", "minatar_one_by_4", "mlp_policy"):
        workload = load_workload(str(repo / f"experiments/workloads/{name}.yaml"))
        path = tmp_path / f"{name}.yaml"
        path.write_text(dump_yaml(workload.to_dict()))
        assert load_workload(str(path)) == workload


def test_one_by_n_mask_from_density_is_deterministic_and_exact():
    def make(seed):
        return Linear(name="l", in_features=64, out_features=32,
                      weight_format={"type": "one_by_n", "n": 4, "density": 0.25, "seed": seed})

    mask = make(3).block_mask()
    assert mask.shape == (8, 64) and mask.sum() == 128
    assert np.array_equal(mask, make(3).block_mask())
    assert not np.array_equal(mask, make(4).block_mask())
    assert len(set(mask.sum(axis=1))) > 1  # rows differ: load imbalance is real
    assert make(3).stored_weight_words == 128 * 4 + 128


def test_explicit_mask_as_strings():
    lay = Linear(name="l", in_features=3, out_features=4,
                 weight_format={"type": "one_by_n", "n": 2, "mask": ["101", "010"]})
    assert lay.block_mask().tolist() == [[True, False, True], [False, True, False]]


def test_conv_output_sizes_match_torch():
    for h, k, s, p in [(10, 3, 1, 0), (7, 3, 2, 1), (84, 8, 4, 0), (5, 5, 1, 2)]:
        lay = Conv2d(name="c", in_channels=2, out_channels=3, in_height=h, in_width=h,
                     kernel_size=k, stride=s, padding=p)
        out = nn.Conv2d(2, 3, k, s, p)(torch.zeros(1, 2, h, h))
        assert (lay.out_height, lay.out_width) == tuple(out.shape[2:])


def test_scalesim_topology_conv_gemm_and_depthwise(tmp_path):
    conv = tmp_path / "net.csv"
    conv.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nConv1,230,230,7,7,3,64,2,\n"
                    "DP1,9,9,3,3,8,1,1,\n")
    workload = load_topology_csv(conv)
    first, dp = workload.layers
    assert (first.out_height, first.gemm_k) == (113, 147)  # SCALE-Sim: ceil((230-7+2)/2)
    assert dp.groups == 8 and dp.out_channels == 8 and dp.gemm_k == 9
    gemm = tmp_path / "gemm.csv"
    gemm.write_text("Layer, M, N, K,\nfc1, 4, 128, 1024,\n")
    (fc,) = load_topology_csv(gemm).layers
    assert (fc.gemm_m, fc.gemm_n, fc.gemm_k) == (4, 128, 1024)


def test_scalesim_cfg(tmp_path):
    cfg = tmp_path / "scale.cfg"
    cfg.write_text("[general]\nrun_name = demo\n[architecture_presets]\nArrayHeight: 16\n"
                   "ArrayWidth: 8\nIfmapSramSzkB: 64\nFilterSramSzkB: 32\nOfmapSramSzkB: 16\n"
                   "Dataflow : is\nBandwidth : 12\n[run_presets]\nInterfaceBandwidth: USER\n")
    hw = load_scalesim_cfg(cfg)
    assert (hw.pe_array.rows, hw.pe_array.cols, hw.pe_array.dataflow) == (16, 8, "is")
    assert hw.dram.bandwidth_words_per_cycle == 12 and hw.word_bits == 8
    assert load_hardware(str(cfg)) == hw
    cfg.write_text(cfg.read_text().replace("USER", "CALC"))
    assert load_scalesim_cfg(cfg).dram.bandwidth_words_per_cycle is None


def test_scalesim_cfg_rejects_unknown_dataflow(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[architecture_presets]\nArrayHeight: 4\nArrayWidth: 4\nIfmapSramSzkB: 1\n"
                   "FilterSramSzkB: 1\nOfmapSramSzkB: 1\nDataflow: rs\n")
    with pytest.raises(ConfigError, match=r"pe_array\.dataflow: got 'rs'"):
        load_scalesim_cfg(cfg)


def test_energy_defaults_and_interpolation(repo):
    hw = load_hardware(str(repo / "experiments/hw/ws_32x32.yaml"))
    table = hw.energy_per_action()
    assert table.mac_pj == pytest.approx(0.23)
    assert table.dram_pj_per_word == pytest.approx(160.0)
    assert sram_pj_per_byte({8.0: 1.25, 32.0: 2.5}, 16.0) == pytest.approx(1.875)
    # 64 KiB lies 1/5 of the way from 32 KiB to 1 MiB in log2 size: 2.5 + 0.2 * (12.5 - 2.5)
    assert table.ifmap_sram_read_pj == pytest.approx(4.5)
    wide = hw.model_copy(update={"word_bits": 16})
    assert wide.energy_per_action().mac_pj == pytest.approx(1.5)


class _Agent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 16, 3), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(1024, 128), nn.ReLU())
        self.policy = nn.Linear(128, 3)
        self.value = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.policy(h), self.value(h)


def test_trace_module_matches_reference_workload(repo):
    traced = workload_from_module(_Agent(), torch.zeros(1, 4, 10, 10), name="minatar_reference")
    reference = load_workload(str(repo / "experiments/workloads/minatar_reference.yaml"))
    shapes = [(lay.kind, lay.gemm_m, lay.gemm_n, lay.gemm_k) for lay in traced.layers]
    assert shapes == [(lay.kind, lay.gemm_m, lay.gemm_n, lay.gemm_k) for lay in reference.layers]
    batched = workload_from_module(_Agent(), torch.zeros(5, 4, 10, 10))
    assert all(lay.batch == 5 for lay in batched.layers)


def test_trace_uses_exporting_modules():
    class Compressed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(8, 8)  # not traced: the module describes itself

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

        def hw_sim_layer(self, name: str, input_shape: tuple[int, ...]) -> Linear:
            return Linear(name=name, in_features=8, out_features=8, batch=input_shape[0],
                          weight_format={"type": "block_circulant", "block_size": 4})

    net = nn.Sequential(Compressed(), nn.Linear(8, 2))
    workload = workload_from_module(net, torch.zeros(2, 8))
    assert [lay.weight_format.type for lay in workload.layers] == ["block_circulant", "dense"]
    assert workload.layers[0].name == "0"


def test_trace_rejects_dilation():
    with pytest.raises(ConfigError, match="dilation"):
        workload_from_module(nn.Conv2d(1, 1, 3, dilation=2), torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize(("data", "message"), [
    ({"layers": [{"name": "c", "kind": "linear", "in_features": 12, "out_features": 16,
                  "weight_format": {"type": "block_circulant", "block_size": 8}}]},
     "layers[0].weight_format.block_size: got 8; allowed: a power of two dividing"),
    ({"layers": [{"name": "c", "kind": "linear", "in_features": 4, "out_features": 8,
                  "weight_format": {"type": "one_by_n", "n": 4, "mask": [[1, 0]]}}]},
     "layers[0].weight_format.mask: got 'shape 1x2'; allowed: shape 2x4"),
    ({"layers": [{"name": "c", "kind": "conv2d", "in_channels": 0, "out_channels": 8,
                  "in_height": 4, "in_width": 4, "kernel_size": 3}]},
     "layers[0].in_channels: got 0; allowed: a number > 0"),
    ({"layers": [{"name": "c", "kind": "conv2d", "in_channels": 2, "out_channels": 8,
                  "in_height": 4, "in_width": 4, "kernel_size": -3}]},
     "layers[0].kernel_size[0]: got -3; allowed: a number > 0"),
    ({"layers": [{"name": "c", "kind": "conv2d", "in_channels": 2, "out_channels": 8,
                  "in_height": 4, "in_width": 4, "kernel_sise": 3}]},
     "layers[0].kernel_sise: got 'kernel_sise'; allowed: did you mean 'kernel_size'?"),
    ({"layers": [{"name": "c", "kind": "conv3d"}]},
     "layers[0].kind: got 'conv3d'; allowed: one of 'conv2d', 'linear'"),
])
def test_bad_workload_fields(data, message):
    with pytest.raises(ConfigError) as info:
        validate(Workload, {"name": "w", **data}, source="net.yaml")
    assert str(info.value).startswith(f"net.yaml: {message}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("patch", "message"), [
    ({"pe_array": {"rows": 4, "cols": 4, "dataflow": "rs"}},
     "pe_array.dataflow: got 'rs'; allowed: 'ws', 'os' or 'is'"),
    ({"pe_array": {"rows": 0, "cols": 4, "dataflow": "ws"}},
     "pe_array.rows: got 0; allowed: a number > 0"),
    ({"sram_kb": {"ifmap": -1, "filter": 4, "ofmap": 4}},
     "sram_kb.ifmap: got -1; allowed: a number > 0"),
    ({"dram": {"bandwith_words_per_cycle": 4}},
     "dram.bandwith_words_per_cycle: got 'bandwith_words_per_cycle'; allowed: did you mean "
     "'bandwidth_words_per_cycle'?"),
    ({"block_circulant": {"fft_points": 12, "fft_units": 1, "ifft_units": 1,
                          "fft_pipeline_depth": 1, "complex_mac_lanes": 1}},
     "block_circulant.fft_points: got 12; allowed: a power of two >= 2"),
])
def test_bad_hardware_fields(patch, message):
    base = {"name": "h", "clock_mhz": 100, "pe_array": {"rows": 4, "cols": 4, "dataflow": "ws"},
            "sram_kb": {"ifmap": 4, "filter": 4, "ofmap": 4}}
    with pytest.raises(ConfigError) as info:
        validate(Hardware, {**base, **patch}, source="hw.yaml")
    assert str(info.value).startswith(f"hw.yaml: {message}")
