"""Turn pydantic validation failures into one-line :class:`ConfigError` messages.

Every typed description in the project (layers, hardware, configs) is a pydantic model with
``extra="forbid"``; :func:`validate` is the single place where their errors are rephrased as
"field: got value; allowed: ...", with a did-you-mean hint for misspelt keys.
"""

from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from a3cs_common.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

_MISSING_VALUE = "<missing>"

#: The largest seed a config or flag takes: numpy and gymnasium take unsigned 32-bit seeds,
#: and a run derives more from its own (evaluation episodes at seed + 10,000 to + 30,000, one
#: per environment), so half that range is left to them.
SEED_MAX = 2**31 - 1
#: A seed field of a config (0 to :data:`SEED_MAX`).
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class FrozenModel(BaseModel):
    """Base of every description: immutable, unknown keys and non-finite numbers (inf, nan,
    1e400) rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True,
                              allow_inf_nan=False)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``("layers", 2, "stride")`` -> ``"layers[2].stride"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_classes(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation may hold (through Optional, unions, tuples)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_model_classes(arg))
    return found


def _reachable_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    stack = [model]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for field in cls.model_fields.values():
            stack.extend(_model_classes(field.annotation))
    return seen


def _union_tags(model: type[BaseModel]) -> set[str]:
    """Discriminator values (``type``/``kind`` literals) of every model reachable from ``model``."""
    tags: set[str] = set()
    for cls in _reachable_models(model):
        for key in ("type", "kind"):
            field = cls.model_fields.get(key)
            if field is not None:
                tags |= {str(a) for a in typing.get_args(field.annotation)}
    return tags


def _own_tag(cls: type[BaseModel]) -> str | None:
    for key in ("type", "kind"):
        field = cls.model_fields.get(key)
        if field is not None and field.default is not None:
            return str(field.default)
    return None


def _clean_loc(loc: tuple[int | str, ...], model: type[BaseModel]) -> tuple[int | str, ...]:
    """Drop the discriminator tags and validator names that pydantic inserts into error paths."""
    tags = _union_tags(model)
    fields = {name for cls in _reachable_models(model) for name in cls.model_fields}
    return tuple(
        part for part in loc
        if not (isinstance(part, str) and (
            (part in tags and part not in fields) or part.startswith(("function-", "tagged-union"))
        ))
    )


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model(s) that the path ``loc`` points into."""
    candidates: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged = [c for c in candidates if part in _union_tags(c) and part not in c.model_fields]
        if tagged and len(tagged) < len(candidates):
            candidates = [c for c in tagged if _own_tag(c) == part] or tagged
            continue
        nxt: list[type[BaseModel]] = []
        for cls in candidates:
            if part in cls.model_fields:
                nxt.extend(_model_classes(cls.model_fields[part].annotation))
        candidates = nxt
    names: list[str] = []
    for cls in candidates:
        names.extend(n for n in cls.model_fields if n not in names)
    return names


def allowed_from_error(err: dict[str, Any]) -> str:
    """What a pydantic error (one of ``ValidationError.errors()``) says is allowed, phrased
    for the user."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    simple = {
        "greater_than": f"a number > {ctx.get('gt')}",
        "greater_than_equal": f"a number >= {ctx.get('ge')}",
        "less_than": f"a number < {ctx.get('lt')}",
        "less_than_equal": f"a number <= {ctx.get('le')}",
        "int_parsing": "an integer",
        "int_type": "an integer",
        "int_from_float": "an integer",
        "float_parsing": "a number",
        "float_type": "a number",
        "finite_number": "a finite number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a string",
        "dict_type": "a mapping of keys to values",
        "model_type": "a mapping of keys to values",
        "list_type": "a list",
        "tuple_type": "a list",
        "too_short": f"at least {ctx.get('min_length')} item(s)",
        "too_long": f"at most {ctx.get('max_length')} item(s)",
    }
    if kind in simple:
        return simple[kind]
    if kind == "literal_error":
        return str(ctx.get("expected", "one of the listed values"))
    msg = str(err.get("msg", kind))
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def config_error_from_pydantic(
    exc: ValidationError, model: type[BaseModel], *, source: str | None = None, prefix: str = ""
) -> ConfigError:
    """The first error of ``exc`` as a one-line :class:`ConfigError` (count of others appended).

    Errors that merely follow from the first one (a list left empty because its only item was
    invalid) are not counted.
    """
    # A misspelt key also leaves a required key missing: report the misspelling first.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    first_loc = tuple(err["loc"])
    others = [e for e in errors[1:] if tuple(e["loc"]) != first_loc[: len(e["loc"])]]
    extra = f" ({len(others)} more error(s) after this one)" if others else ""
    loc = _clean_loc(first_loc, model)
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    base = prefix + format_loc(loc)
    if isinstance(inner, ConfigError):
        field = inner.field if not base else (f"{base}.{inner.field}" if inner.field else base)
        return ConfigError(field, inner.value, inner.allowed + extra, source=source)
    if err["type"] == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        known = _fields_at(model, first_loc[:-1])
        hint = difflib.get_close_matches(key, known, n=1)
        allowed = "one of the keys " + ", ".join(known) if known else "no such key"
        if hint:
            allowed = f"did you mean '{hint[0]}'? ({allowed})"
        return ConfigError(base, key, allowed + extra, source=source)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "type")).strip("'")
        field = f"{base}.{key}" if base else key
        allowed = f"one of {ctx['expected_tags']}" if "expected_tags" in ctx else "a value is required"
        return ConfigError(field, ctx.get("tag", _MISSING_VALUE), allowed + extra, source=source)
    if err["type"] == "missing":
        return ConfigError(base, _MISSING_VALUE, "a value is required" + extra, source=source)
    return ConfigError(base, err.get("input"), allowed_from_error(err) + extra, source=source)


def validate(
    model: type[ModelT], data: Any, *, source: str | None = None, prefix: str = ""
) -> ModelT:
    """Validate ``data`` into ``model``; raise a one-line :class:`ConfigError` on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error_from_pydantic(exc, model, source=source, prefix=prefix) from None
