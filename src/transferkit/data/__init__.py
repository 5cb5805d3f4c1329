"""Image sources, splits and the torch Dataset: everything between files on disk and a DataLoader.

Names are imported on first use (see `transferkit._lazy`): reading a list file or checking a folder
needs neither torch nor scikit-learn.
"""

from typing import TYPE_CHECKING

from transferkit._lazy import lazy_names

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "transferkit.data.dataset": ["ImageDataset"],
        "transferkit.data.errors": ["DataError"],
        "transferkit.data.images": ["IMAGE_EXTENSIONS", "array_to_rgb", "open_rgb"],
        "transferkit.data.preprocessing": ["Preprocessing"],
        "transferkit.data.sources": [
            "FASHION_MNIST_CLASSES",
            "ImageSource",
            "fashion_mnist",
            "from_folder",
            "from_idx",
            "from_list",
        ],
        "transferkit.data.split": ["per_class_subset", "stratified_folds", "stratified_split"],
        "transferkit.data.transforms": ["build_transforms"],
    },
)

if TYPE_CHECKING:
    from transferkit.data.dataset import ImageDataset
    from transferkit.data.errors import DataError
    from transferkit.data.images import IMAGE_EXTENSIONS, array_to_rgb, open_rgb
    from transferkit.data.preprocessing import Preprocessing
    from transferkit.data.sources import (
        FASHION_MNIST_CLASSES,
        ImageSource,
        fashion_mnist,
        from_folder,
        from_idx,
        from_list,
    )
    from transferkit.data.split import per_class_subset, stratified_folds, stratified_split
    from transferkit.data.transforms import build_transforms

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "DataError",
    "ImageDataset",
    "ImageSource",
    "Preprocessing",
    "array_to_rgb",
    "build_transforms",
    "fashion_mnist",
    "from_folder",
    "from_idx",
    "from_list",
    "open_rgb",
    "per_class_subset",
    "stratified_folds",
    "stratified_split",
]
