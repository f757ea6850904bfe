"""accelerator_model: fast analytical hardware models (accelerators and edge CPUs), the
accelerator search space and the differentiable hardware cost."""
