"""distill: A2D actor-critic distillation (teacher policy and value into a student)."""
