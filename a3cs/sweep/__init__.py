"""``a3cs sweep``: grids of searches (methods x seeds x games x any search field) on Ray Tune.

* :mod:`a3cs.sweep.config`: the sweep file and its expansion into validated trials.
* :mod:`a3cs.sweep.runner`: Ray Tune runs the trials; kill and ``--resume`` lose nothing.
* :mod:`a3cs.sweep.summary`: the table per method and game, Pareto plots per game.
"""
