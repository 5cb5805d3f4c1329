"""transferkit: fine-tune pretrained backbones on small labelled datasets.

Example:
    >>> from transferkit import Finetuner
    >>> tuner = Finetuner.from_folder("data/pets", strategy="linear-probe")   # doctest: +SKIP
    >>> tuner.fit()                                                           # doctest: +SKIP
"""

from transferkit.config import TrainConfig
from transferkit.data import ImageSource, fashion_mnist, from_folder, from_idx, from_list
from transferkit.evaluate import evaluate_run, load_run, predict_images
from transferkit.finetuner import Finetuner
from transferkit.models import STRATEGIES, build_model, get_backbone, list_backbones
from transferkit.train import RunResult, train_run

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES",
    "Finetuner",
    "ImageSource",
    "RunResult",
    "TrainConfig",
    "__version__",
    "build_model",
    "evaluate_run",
    "fashion_mnist",
    "from_folder",
    "from_idx",
    "from_list",
    "get_backbone",
    "list_backbones",
    "load_run",
    "predict_images",
    "train_run",
]
