"""Image sources, splits and the torch Dataset: everything between files on disk and a DataLoader."""

from transferkit.data.dataset import ImageDataset
from transferkit.data.errors import DataError
from transferkit.data.images import IMAGE_EXTENSIONS, array_to_rgb, open_rgb
from transferkit.data.sources import (
    FASHION_MNIST_CLASSES,
    ImageSource,
    fashion_mnist,
    from_folder,
    from_idx,
    from_list,
)
from transferkit.data.preprocessing import Preprocessing
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
