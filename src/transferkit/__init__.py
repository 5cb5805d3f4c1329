"""transferkit: fine-tune pretrained backbones on small labelled datasets.

The public names are imported on first use, so ``import transferkit`` (and the command line's
``--help``) costs milliseconds; torch and timm load when a model or dataset is first asked for.

Example:
    >>> from transferkit import Finetuner
    >>> tuner = Finetuner.from_folder("data/pets", strategy="lp-ft")          # doctest: +SKIP
    >>> tuner.fit()                                                           # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from transferkit._console import set_verbosity
from transferkit._lazy import lazy_names

_getattr, __dir__ = lazy_names(
    __name__,
    {
        "transferkit.config": ["TrainConfig"],
        "transferkit.data": ["ImageSource", "fashion_mnist", "from_folder", "from_idx", "from_list"],
        "transferkit.evaluate": ["evaluate_run", "load_run", "predict_images"],
        "transferkit.finetuner": ["Finetuner"],
        "transferkit.models": ["build_model", "get_backbone", "list_backbones"],
        "transferkit.strategies": ["Strategy", "get_strategy", "register_strategy", "strategy_names"],
        "transferkit.train": ["RunResult", "train_run"],
    },
)


def __getattr__(name: str) -> object:
    if name == "__version__":  # read from the installed metadata on demand: the look-up scans site-packages
        from transferkit._version import package_version

        return package_version()
    return _getattr(name)


if TYPE_CHECKING:
    from transferkit.config import TrainConfig
    from transferkit.data import ImageSource, fashion_mnist, from_folder, from_idx, from_list
    from transferkit.evaluate import evaluate_run, load_run, predict_images
    from transferkit.finetuner import Finetuner
    from transferkit.models import build_model, get_backbone, list_backbones
    from transferkit.strategies import Strategy, get_strategy, register_strategy, strategy_names
    from transferkit.train import RunResult, train_run

__all__ = [
    "Finetuner",
    "ImageSource",
    "RunResult",
    "Strategy",
    "TrainConfig",
    "__version__",
    "build_model",
    "evaluate_run",
    "fashion_mnist",
    "from_folder",
    "from_idx",
    "from_list",
    "get_backbone",
    "get_strategy",
    "list_backbones",
    "load_run",
    "predict_images",
    "register_strategy",
    "set_verbosity",
    "strategy_names",
    "train_run",
]
