"""A3C-S: co-search of deep-RL agents and the hardware they run on."""

__version__ = "0.1.0"
