"""The weight formats, one module each, and the registry the rest of the project asks.

``FORMATS`` lists the format classes; adding a format is a module here that subclasses
:class:`~a3cs_common.formats.base.FormatBase` and one entry in ``FORMATS`` (then its engine,
trainable layer and model terms register under its ``type`` in their own packages).
:data:`WeightFormat` is the tagged union that every description (workloads, architectures,
search spaces) validates a ``weight_format`` against.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from a3cs_common.errors import ConfigError
from a3cs_common.formats.base import FormatBase, LayerGeometry
from a3cs_common.formats.block_circulant import BlockCirculant
from a3cs_common.formats.dense import Dense
from a3cs_common.formats.n_m import NM
from a3cs_common.formats.one_by_n import OneByN

#: Every weight format, in the order their one-hot codes and tables use.
FORMATS: tuple[type[FormatBase], ...] = (Dense, BlockCirculant, OneByN, NM)

#: A weight format, parsed by its ``type`` tag.
WeightFormat = Annotated[Union[*FORMATS], Field(discriminator="type")]

#: ``type`` tag -> format class.
FORMAT_BY_TYPE: dict[str, type[FormatBase]] = {
    cls.model_fields["type"].default: cls for cls in FORMATS
}


def format_class(type_name: str, *, field: str = "weight_format.type") -> type[FormatBase]:
    """The format class tagged ``type_name``.

    Raises:
        ConfigError: no format has that tag.
    """
    try:
        return FORMAT_BY_TYPE[type_name]
    except (KeyError, TypeError):
        raise ConfigError(field, type_name, "one of " + ", ".join(FORMAT_BY_TYPE)) from None


__all__ = ["FORMATS", "FORMAT_BY_TYPE", "NM", "BlockCirculant", "Dense", "FormatBase",
           "LayerGeometry", "OneByN", "WeightFormat", "format_class"]
