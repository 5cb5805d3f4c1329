"""transferkit: fine-tune pretrained backbones on small labelled datasets.

Example:
    >>> from transferkit import Finetuner
    >>> tuner = Finetuner.from_folder("data/pets", strategy="lp-ft")          # doctest: +SKIP
    >>> tuner.fit()                                                           # doctest: +SKIP
"""

from transferkit._console import set_verbosity
from transferkit.config import TrainConfig
from transferkit.data import ImageSource, fashion_mnist, from_folder, from_idx, from_list
from transferkit.evaluate import evaluate_run, load_run, predict_images
from transferkit.finetuner import Finetuner
from transferkit.models import build_model, get_backbone, list_backbones
from transferkit.strategies import Strategy, get_strategy, register_strategy, strategy_names
from transferkit.train import RunResult, train_run

__version__ = "0.1.0"

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
