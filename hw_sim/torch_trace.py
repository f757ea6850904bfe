"""Build a workload from a torch ``nn.Module`` by tracing shapes on a sample input.

``nn.Conv2d`` and ``nn.Linear`` become dense layers.  A module that knows its own hardware
form (a compressed layer from :mod:`nas`) implements :class:`ExportsLayer`; it is recorded as
one layer and its children are not traced.  Layers are listed in the order they run; a module
called twice appears twice (``name#2``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from a3cs_common.errors import ConfigError
from hw_sim.workload import Conv2d, Linear, Workload

if TYPE_CHECKING:
    import torch


@runtime_checkable
class ExportsLayer(Protocol):
    """A module that describes itself to the hardware."""

    def hw_sim_layer(self, name: str, input_shape: tuple[int, ...]) -> Conv2d | Linear:
        """The layer this module runs for an input of ``input_shape`` (batch first)."""
        ...


def _conv_layer(module: Any, name: str, shape: tuple[int, ...]) -> Conv2d:
    if len(shape) == 3:
        shape = (1, *shape)
    if module.dilation not in ((1, 1), 1):
        raise ConfigError(f"{name}.dilation", module.dilation,
                          "1 (dilated convolutions are not modelled)")
    padding = module.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:  # "same" with stride 1: symmetric only
            kh, kw = module.kernel_size
            if (kh - 1) % 2 or (kw - 1) % 2:
                raise ConfigError(f"{name}.padding", "same",
                                  "explicit padding, or 'same' with odd kernel sizes")
            padding = ((kh - 1) // 2, (kw - 1) // 2)
    return Conv2d(
        name=name, in_channels=module.in_channels, out_channels=module.out_channels,
        in_height=shape[2], in_width=shape[3], kernel_size=tuple(module.kernel_size),
        stride=tuple(module.stride), padding=tuple(padding), groups=module.groups,
        batch=shape[0],
    )


def _linear_layer(module: Any, name: str, shape: tuple[int, ...]) -> Linear:
    batch = 1
    for dim in shape[:-1]:
        batch *= dim
    return Linear(name=name, in_features=module.in_features, out_features=module.out_features,
                  batch=batch)


def workload_from_module(
    module: torch.nn.Module, sample_input: torch.Tensor | tuple[Any, ...], name: str | None = None
) -> Workload:
    """Run ``module`` once on ``sample_input`` and record its layers.

    Args:
        module: the network.
        sample_input: a tensor (or tuple of forward arguments) with the batch size to model.
        name: workload name; defaults to the module's class name.

    Raises:
        ConfigError: the module has no Conv2d/Linear layers, or uses one that cannot be
            modelled (dilation).
    """
    import torch

    exporters: list[str] = []
    for qualified, sub in module.named_modules():
        if qualified and isinstance(sub, ExportsLayer):
            exporters.append(qualified)

    def inside_exporter(qualified: str) -> bool:
        return any(qualified.startswith(e + ".") for e in exporters)

    recorded: list[Conv2d | Linear] = []
    calls: dict[str, int] = {}
    handles = []

    def hook_for(qualified: str, sub: torch.nn.Module):
        def hook(_mod: torch.nn.Module, inputs: tuple[Any, ...], _out: Any) -> None:
            shape = tuple(inputs[0].shape)
            calls[qualified] = calls.get(qualified, 0) + 1
            layer_name = qualified if calls[qualified] == 1 else f"{qualified}#{calls[qualified]}"
            if isinstance(sub, ExportsLayer):
                recorded.append(sub.hw_sim_layer(layer_name, shape))
            elif isinstance(sub, torch.nn.Conv2d):
                recorded.append(_conv_layer(sub, layer_name, shape))
            else:
                recorded.append(_linear_layer(sub, layer_name, shape))
        return hook

    for qualified, sub in module.named_modules():
        if qualified and inside_exporter(qualified):
            continue
        if isinstance(sub, ExportsLayer | torch.nn.Conv2d | torch.nn.Linear):
            label = qualified or type(sub).__name__.lower()  # the module itself is one layer
            handles.append(sub.register_forward_hook(hook_for(label, sub)))
            if not qualified:
                break
    try:
        args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
        with torch.no_grad():
            module(*args)
    finally:
        for handle in handles:
            handle.remove()
    if not recorded:
        raise ConfigError("module", type(module).__name__, "a network with Conv2d or Linear layers")
    return Workload(name=name or type(module).__name__, layers=tuple(recorded))
