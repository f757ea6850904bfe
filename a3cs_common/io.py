"""Reading YAML/JSON inputs and writing outputs atomically.

Writes go to a temporary file in the destination folder and are renamed into place, so a
killed process never leaves a torn file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from a3cs_common.errors import ConfigError


def read_text(path: str | os.PathLike[str], *, field: str = "file",
              expected: str = "a UTF-8 text file") -> str:
    """The text of a file a user named, or a one-line :class:`ConfigError`.

    Every input file of the project is read through here, so a missing file, a directory, an
    unreadable file and bytes that are not UTF-8 text (binary garbage, another encoding) all
    end the same way.

    Args:
        path: the file.
        field: how the CLI refers to this input (e.g. ``"--hw"``).
        expected: what the file should be, for the message.

    Raises:
        ConfigError: the file is missing, not a regular file, unreadable, or not UTF-8 text.
    """
    file = Path(path)
    if not file.is_file():
        what = "a directory" if file.is_dir() else "missing"
        raise ConfigError(field, str(path), f"{expected} (this path is {what})")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(field, str(path), f"{expected} that can be read "
                          f"({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(field, str(path), f"{expected} (byte {exc.start} is not UTF-8: "
                          "binary data or another encoding)") from None


def check_output_path(path: str | os.PathLike[str], *, field: str,
                      kind: str = "file") -> Path:
    """Check, before any work starts, that ``path`` can be written as a ``kind`` (``file`` or
    ``directory``): it is not the other kind, and its folders exist or can be created.

    Raises:
        ConfigError: ``path`` is a directory where a file goes (or the reverse), one of its
            parents is a file, or the deepest existing parent is not writable.
    """
    target = Path(path)
    if target.exists() and kind == "file" and target.is_dir():
        raise ConfigError(field, str(path), "a file path (this is a directory)")
    if target.exists() and kind == "directory" and not target.is_dir():
        raise ConfigError(field, str(path), "a directory path (this is a file)")
    parent = target if kind == "directory" and target.is_dir() else target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(field, str(path), f"a path whose folders can be created ({parent} "
                          "is a file)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(field, str(path), f"a path in a folder you can write ({parent} is "
                          "not writable)")
    return target


def load_mapping(path: str | os.PathLike[str], *, field: str = "file") -> dict[str, Any]:
    """Load a YAML or JSON file whose top level is a mapping.

    Args:
        path: file to read; ``.json`` is parsed as JSON, anything else as YAML.
        field: how the CLI refers to this input (e.g. ``"--hw"``), used in error messages.

    Raises:
        ConfigError: the file is missing, unreadable, not valid YAML/JSON, or not a mapping.
    """
    file = Path(path)
    text = read_text(path, field=field, expected="a path to an existing YAML or JSON file")
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}" if where is not None else "the file"
        if isinstance(exc, json.JSONDecodeError):
            line = f"line {exc.lineno}"
        raise ConfigError(field, str(path), f"valid YAML/JSON (parse error at {line})") from None
    if not isinstance(data, dict):
        raise ConfigError(field, str(path), "a file whose top level is a mapping of keys to values")
    return data


def load_json_records(path: str | os.PathLike[str], *, field: str, expected: str,
                      keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Load a JSON file a run wrote, whose top level is a list of mappings that each hold
    ``keys`` (a stage's trials or finalists, read back on ``--resume``).

    Raises:
        ConfigError: the file is unreadable, not JSON, or not such a list: it was damaged
            after the run wrote it (runs write atomically).
    """
    advice = "a run's own file, as it wrote it: restore it or start a new --out directory"
    try:
        text = read_text(path, field=field, expected=expected)
    except ConfigError as exc:
        raise ConfigError(field, str(path), f"{exc.allowed}; {advice}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(field, str(path), f"{expected} that is valid JSON (parse error at "
                          f"line {exc.lineno}): {advice}") from None
    if not isinstance(data, list) or not all(
            isinstance(item, dict) and all(key in item for key in keys) for item in data):
        raise ConfigError(field, str(path), f"{expected}: a list of records with "
                          f"{', '.join(keys)}; {advice}")
    return data


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, then rename)."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename).

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write_bytes` left in ``folder`` when its
    process was killed mid-write (``.NAME.XXXXXXXX.tmp``); returns them.

    Call it where a run starts or resumes, when no other process writes into ``folder``.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = [path for path in root.glob(".*.tmp") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_figure(fig: Any, stem: str | os.PathLike[str], *, dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` and ``stem.svg`` atomically, then close it.

    Returns the two paths (PNG first).
    """
    import io

    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=dpi)
        paths.append(atomic_write_bytes(Path(stem).with_suffix(f".{ext}"), buffer.getvalue()))
    plt.close(fig)
    return paths


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dump_yaml(data: Any) -> str:
    """YAML text for plain data (dicts, lists, numbers, strings), keys in insertion order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
