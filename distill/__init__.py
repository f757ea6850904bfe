"""distill: A2D actor-critic distillation (teacher policy and value into a student).

* :mod:`distill.losses`: ``KL(pi_T || pi_S)`` and ``MSE(V_T, V_S)``, :func:`distill_loss`.
* :mod:`distill.schedules`: :class:`DistillConfig` (weights, schedule) and its schedule.
* :mod:`distill.teacher`: :class:`Teacher`, a frozen trained agent.
"""
