"""Which local files the CLI uploads: a model file or folder, and a service's source directory."""

from __future__ import annotations

from pathlib import Path

from edgefleet.hub.configs import InferenceConfig
from edgefleet.hub.errors import ClientError, ConfigError

_SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def _walk(root: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in _SKIP_SUFFIXES:
            found.append((rel.as_posix(), path))
    return found


def collect_files(path: Path) -> list[tuple[str, Path]]:
    """(relative path, local path) of a model: a single file by its name, or every file of a folder."""
    if path.is_file():
        return [(path.name, path)]
    if path.is_dir():
        files = _walk(path)
        if not files:
            raise ClientError(f"{path}: the folder holds no files to register")
        return files
    raise ClientError(f"{path}: no such file or folder")


def directory_files(root: Path, entry_script: str | None) -> list[tuple[str, Path]]:
    """Every file of a source folder given on the command line (``--source-dir``), relative to it;
    the entry script must be one of them."""
    if not root.is_dir():
        raise ClientError(f"--source-dir {root}: not a folder")
    if entry_script and not (root / entry_script).is_file():
        raise ClientError(f"--source-dir {root}: the entry script {entry_script!r} is not in it")
    return _walk(root)


def source_files(ic_path: Path, ic: InferenceConfig) -> list[tuple[str, Path]]:
    """The service's source files, relative to sourceDirectory (itself relative to the config file).

    Without a sourceDirectory only the entry script is uploaded; without either nothing (no-code).
    """
    base = ic_path.parent
    if ic.source_directory:
        root = (base / ic.source_directory.replace("\\", "/")).resolve()
        if not root.is_dir():
            raise ConfigError(f"{ic_path}: sourceDirectory {ic.source_directory!r} is not a folder (looked at {root})")
        files = _walk(root)
    elif ic.entry_script:
        root = base
        files = [(ic.entry_script, base / ic.entry_script)]
    else:
        return []
    if ic.entry_script and not (root / ic.entry_script).is_file():
        raise ConfigError(f"{ic_path}: entryScript {ic.entry_script!r} not found in {root}")
    return files
