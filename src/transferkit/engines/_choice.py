"""What `--engine auto` chose for one frozen extractor, kept beside its exported files for later runs.

Choosing means exporting the extractor to ONNX, converting it to MNN, checking both against torch and timing
them: seconds of work and a few hundred MiB of memory that give the same answer for the same weights, image
size and installed packages. The record says which engine won and the parity figures it passed with, and
holds a digest of the file it chose, so a changed or damaged file is never trusted: the choice is made again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ENGINE_PACKAGES", "EngineChoice", "installed_engines"]

ENGINE_PACKAGES = {"onnxruntime": ("onnxruntime", "onnxruntime"), "mnn": ("MNN", "MNN")}
"""Engine -> (module to import, distribution whose version the record keeps)."""
_FORMAT = 1


def installed_engines() -> dict[str, str]:
    """Engine name -> package version of every exported-model engine that can be imported (none imported)."""
    found = {}
    for name, (module, dist) in ENGINE_PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            continue
        try:
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


@dataclass
class EngineChoice:
    """The engine `auto` chose for one extractor (weights and image size), and the evidence.

    Attributes:
        chosen: torch, onnxruntime or mnn.
        packages: The engine packages installed when it was chosen, with versions (another set: choose again).
        checks: Each candidate's parity and timing line, as printed when it was checked.
        file: The chosen engine's exported file name (in the record's folder); empty for torch.
        sha256: That file's digest when it was checked.
    """

    chosen: str
    packages: dict[str, str]
    checks: dict[str, str] = field(default_factory=dict)
    file: str = ""
    sha256: str = ""

    @staticmethod
    def path(folder: Path, key: str) -> Path:
        return folder / f"{key}.auto.json"

    @classmethod
    def read(cls, folder: Path, key: str, packages: dict[str, str]) -> EngineChoice | None:
        """The record for `key`, or None when there is none or it no longer holds (other packages, changed file)."""
        try:
            data = json.loads(cls.path(folder, key).read_text())
            if data.pop("format") != _FORMAT:
                return None
            choice = cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if choice.packages != packages:
            return None
        if choice.file and (not (folder / choice.file).is_file() or file_digest(folder / choice.file) != choice.sha256):
            return None
        return choice

    def write(self, folder: Path, key: str) -> None:
        """Write the record (atomically: a reader sees the old one or the new one)."""
        if self.file:
            self.sha256 = file_digest(folder / self.file)
        path = self.path(folder, key)
        tmp = path.with_name(f".{os.getpid()}.{path.name}")
        tmp.write_text(json.dumps({"format": _FORMAT, **asdict(self)}, indent=2))
        os.replace(tmp, path)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
