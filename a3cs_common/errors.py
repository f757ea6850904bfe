"""The one error type for bad user input, shared by every package of the project.

Every config, YAML file, CLI argument or checkpoint that is wrong ends in a
:class:`ConfigError`.  Its message is a single line that names the field, the bad value and
what is allowed, so the CLI can print it and exit with status 2 without a traceback.
"""

from __future__ import annotations

_MAX_VALUE_CHARS = 60
_MAX_STRING_CHARS = 240  # file paths are named whole


def short_repr(value: object) -> str:
    """``repr(value)`` on one line, shortened to at most 60 characters (strings, such as file
    paths: 240)."""
    text = repr(value).replace("\n", " ")
    limit = _MAX_STRING_CHARS if isinstance(value, str) else _MAX_VALUE_CHARS
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class ConfigError(ValueError):
    """A user-supplied value is invalid.

    ``str(error)`` is one line: ``"<source>: <field>: got <value>; allowed: <allowed>"``.

    Args:
        field: dotted path of the offending field, e.g. ``"layers[2].weight_format.block_size"``
            or a CLI flag such as ``"--hw"``.
        value: the value that was given.
        allowed: what would have been accepted, phrased for the user.
        source: where the value came from (a file path); optional.
    """

    def __init__(self, field: str, value: object, allowed: str, *, source: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        super().__init__(self.message)

    @property
    def message(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{self.field}: got {short_repr(self.value)}; allowed: {self.allowed}"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # Ray copies and pickles a trial's exception to report it; the default reduce would
        # call __init__ with the message alone and raise a TypeError in its place.
        return (_rebuild_config_error, (self.field, self.value, self.allowed, self.source))

    def within(self, parent: str) -> ConfigError:
        """The same error with ``parent`` prepended to the field path."""
        joined = parent if not self.field else (
            f"{parent}{self.field}" if self.field.startswith("[") else f"{parent}.{self.field}"
        )
        return ConfigError(joined, self.value, self.allowed, source=self.source)

    def from_source(self, source: str) -> ConfigError:
        """The same error attributed to the file ``source``."""
        return ConfigError(self.field, self.value, self.allowed, source=source)


def _rebuild_config_error(field: str, value: object, allowed: str,
                          source: str | None) -> ConfigError:
    return ConfigError(field, value, allowed, source=source)
