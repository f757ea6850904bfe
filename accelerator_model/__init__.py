"""accelerator_model: fast analytical hardware models (accelerators and edge CPUs), the
accelerator search space and the differentiable hardware cost.

Accelerators (hw_sim's hardware, in closed form, batched over (layer, configuration) pairs):

* :mod:`~accelerator_model.encode`: hw_sim layers and configurations as tensor columns;
* :mod:`~accelerator_model.timeline`: hw_sim's double-buffered memory model over nested
  step patterns;
* :mod:`~accelerator_model.engines`: the systolic, block-circulant and 1xN engines;
* :mod:`~accelerator_model.model`: :func:`evaluate` for pairs and :func:`estimate` for a
  workload (hw_sim's report types);
* :mod:`~accelerator_model.resources`: FPGA DSP/BRAM18 and ASIC PE/SRAM/area, and budgets;
* :mod:`~accelerator_model.space`: the accelerator search space (YAML, nni mutables, chunks);
* :mod:`~accelerator_model.cost`: whole-network cost and the differentiable cost;
* :mod:`~accelerator_model.search`: exhaustive, random and differentiable search;
* :mod:`~accelerator_model.fidelity`: random pairs for checking the model against hw_sim.

Edge CPUs: ``accelerator_model.cpu*``.  See docs/accelerator_model.md.
"""
