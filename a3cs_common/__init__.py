"""a3cs_common: the pieces every package of the project shares, and nothing else.

* :mod:`a3cs_common.errors`: :class:`~a3cs_common.errors.ConfigError`, the one error type for
  bad user input (one line, exit status 2 at the CLI);
* :mod:`a3cs_common.schema`: frozen pydantic models and the translation of their validation
  errors into ``ConfigError``;
* :mod:`a3cs_common.io`: reading user files, atomic writes, YAML, figures (PNG and SVG);
* :mod:`a3cs_common.formats`: the weight formats (dense, block-circulant, 1xN, N:M), each in
  its own module, and the registry every other package asks about them.

It imports nothing from the rest of the project: the import graph goes
``a3cs_common <- hw_sim <- accelerator_model <- nas / distill <- a3cs``.
"""
