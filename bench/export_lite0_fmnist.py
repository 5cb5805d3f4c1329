"""Export figures on Fashion-MNIST with EfficientNet-Lite0: parity of every format, int8 cost, cut-model probe.

Trains a native linear probe (100 images per class, seeded 20% validation split, 64 px), exports it to ONNX
and MNN (fp32 + int8 calibrated on the training split), measures each file's top-1 agreement with PyTorch on
the validation images (the export's own parity check) and on test images, then trains a linear probe on the
exported ONNX cut at its pooling node and compares its test accuracy with the native probe's.

Usage:
    python bench/export_lite0_fmnist.py [--fmnist DIR] [--per-class 100] [--test 2000] [--size 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from transferkit import TrainConfig, train_run
from transferkit.data import fashion_mnist, per_class_subset
from transferkit.engines import engine_logits, load_engine
from transferkit.evaluate.inference import load_run, run_logits
from transferkit.export import export_run
from transferkit.export.cut import train_from_model_file

POOL_NODE = "/global_pool/pool/GlobalAveragePool"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="transferkit-bench-"))
    train = fashion_mnist(args.fmnist, "train")
    train = train.subset(per_class_subset(train.labels, args.per_class, 0))
    test = fashion_mnist(args.fmnist, "test")
    test = test.subset(per_class_subset(test.labels, args.test // len(test.classes), 0))
    config = TrainConfig(
        backbone="efficientnet_lite0", strategy="linear-probe", image_size=args.size, epochs=args.epochs, seed=0
    )
    figures: dict = {"per_class": args.per_class, "image_size": args.size, "test_images": len(test)}

    began = time.perf_counter()
    run_dir = out / "native"
    train_run(config, train, run_dir=run_dir)
    figures["native_train_s"] = round(time.perf_counter() - began, 1)
    logits, labels = run_logits(load_run(run_dir), test)
    reference, labels = logits.numpy(), labels.numpy()
    figures["native_test_acc"] = float((reference.argmax(1) == labels).mean())

    parity = export_run(run_dir, "onnx", check_images=10_000).parity
    parity += export_run(run_dir, "mnn", int8=True, check_images=10_000).parity
    figures["parity"] = [
        {
            k: getattr(p, k)
            for k in ("format", "precision", "n_images", "top1_agreement", "max_abs_diff", "file_bytes")
            + ("images_per_s", "images_per_s_batch1", "torch_images_per_s")
        }
        for p in parity
    ]
    figures["on_test"] = {}
    for p in parity:
        exported = engine_logits(load_engine(p.file), test, 64)
        figures["on_test"][Path(p.file).name] = {
            "top1_agreement": float((exported.argmax(1) == reference.argmax(1)).mean()),
            "test_acc": float((exported.argmax(1) == labels).mean()),
        }

    began = time.perf_counter()
    cut_config = TrainConfig(strategy="linear-probe", epochs=args.epochs, seed=0)
    cut = train_from_model_file(
        run_dir / "export" / "model.onnx", POOL_NODE, train, config=cut_config, test=test, run_dir=out / "cut"
    )
    figures["cut_train_s"] = round(time.perf_counter() - began, 1)
    figures["cut_test_acc"] = cut.test_acc
    figures["cut_best_val_acc"] = cut.best_val_acc
    print(json.dumps(figures, indent=2, default=lambda x: round(x, 6) if isinstance(x, float) else str(x)))
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(f"written to {out / 'figures.json'}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
