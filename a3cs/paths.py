"""Paths recorded in run directories: portable between machines and read back anywhere.

A run directory (``a3cs train``, ``a3cs search``) records the files it used (teacher
checkpoint, accelerator space, agent space).  An absolute path of the machine that ran it
would make the committed run useless elsewhere, so a packaged file is recorded by its path in
the package's data folder and a file under the working directory (a repository's root)
relative to it; :func:`resolve_path` reads either back.
"""

from __future__ import annotations

from pathlib import Path

#: The package's data folder (teachers, accelerator spaces, default configs).
DATA_DIR = Path(__file__).resolve().parent / "data"


def resolve_path(value: str, base: Path | None) -> str:
    """A relative path from a config file, made relative to that file (then the working
    directory, then the packaged data folder); absolute paths and paths that exist nowhere
    unchanged (the caller's check names them)."""
    path = Path(value)
    if path.is_absolute():
        return value
    for root in (base, Path.cwd(), DATA_DIR):
        if root is not None and (root / path).exists():
            return str((root / path).resolve())
    return value


def portable_path(value: str) -> str:
    """``value`` as it should be recorded in a run directory, valid on another machine: a
    file of the packaged data folder by its path there, a file under the working directory
    (a repository's root) relative to it, anything else unchanged.  :func:`resolve_path`
    (with no base) reads it back."""
    path = Path(value)
    if not path.is_absolute():
        return value
    for root in (DATA_DIR, Path.cwd()):
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return value
