"""One module per ``a3cs`` subcommand: ``register(subparsers)`` and ``run(args) -> int``."""
