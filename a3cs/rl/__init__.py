"""a3cs.rl: actor-critic agents (PPO, A2C) on MinAtar, classic control, ALE and MuJoCo.

* :mod:`a3cs.rl.envs`: :func:`~a3cs.rl.envs.make_env` for every environment family.
* :mod:`a3cs.rl.networks`: networks built from :class:`nas.arch.Arch`, action distributions.
* :mod:`a3cs.rl.algorithms`: rollout collection, GAE, PPO/A2C losses, the update.
* :mod:`a3cs.rl.config`: :class:`~a3cs.rl.config.TrainConfig`, every hyperparameter.
* :mod:`a3cs.rl.train`: the driver behind ``a3cs train``; :mod:`a3cs.rl.checkpoint`:
  checkpoints and ``--resume``; :mod:`a3cs.rl.evaluate`: ``a3cs evaluate``.
"""
