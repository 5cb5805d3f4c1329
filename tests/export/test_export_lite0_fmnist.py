"""EfficientNet-Lite0 on Fashion-MNIST: exports agree with PyTorch; a probe on the cut ONNX matches the native one."""

from __future__ import annotations

import pytest

from transferkit import TrainConfig, train_run
from transferkit.data import fashion_mnist, per_class_subset
from transferkit.evaluate import predict_images
from transferkit.evaluate.inference import load_run, run_logits
from transferkit.export import Tolerance, export_run
from transferkit.export._checkdata import run_check_data
from transferkit.export.cut import train_from_model_file

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

POOL_NODE = "/global_pool/pool/GlobalAveragePool"
CONFIG = {"backbone": "efficientnet_lite0", "epochs": 10, "lr": 1e-3, "image_size": 64, "seed": 0}


@pytest.fixture(scope="module")
def fmnist_train(fmnist_dir):
    """20 training images per class (160 train / 40 validation after the seeded split)."""
    source = fashion_mnist(fmnist_dir, "train")
    return source.subset(per_class_subset(source.labels, 20, 0))


@pytest.fixture(scope="module")
def fmnist_test(fmnist_dir):
    """50 test images per class."""
    source = fashion_mnist(fmnist_dir, "test")
    return source.subset(per_class_subset(source.labels, 50, 0))


@pytest.fixture(scope="module")
def lite0_probe(tmp_path_factory, fmnist_train):
    """A native linear probe of EfficientNet-Lite0 (ImageNet weights) at 64 px."""
    run_dir = tmp_path_factory.mktemp("lite0") / "probe"
    train_run(TrainConfig(strategy="linear-probe", **CONFIG), fmnist_train, run_dir=run_dir)
    return run_dir


def test_onnx_and_mnn_exports_agree_with_pytorch(lite0_probe, tmp_path):
    pytest.importorskip("MNN")
    onnx = export_run(lite0_probe, "onnx")
    # int8 moves logits by design; the bar here is lower than the export default of 90% so that a different
    # CPU's int8 kernels cannot fail the test on its 40 images, while a broken quantisation still does.
    mnn = export_run(lite0_probe, "mnn", int8=True, int8_tolerance=Tolerance(0.8, None))
    fp32 = [onnx.parity[0], *[p for p in mnn.parity if p.precision == "fp32"]]
    for report in fp32:
        assert report.n_images == 40 and report.images_from.startswith("validation split of fashion-mnist/train")
        assert report.top1_agreement >= 0.995 and report.max_abs_diff < 1e-3, report.summary()
    int8 = next(p for p in mnn.parity if p.precision == "int8")
    print(int8.summary())  # the int8 figure, for the record (-s shows it)
    assert int8.passed and int8.top1_agreement >= 0.8
    assert int8.file_bytes < 0.35 * mnn.parity[0].file_bytes  # 3.4M weights: int8 about a quarter of fp32

    # Round trip through image files: the exported files predict what the PyTorch run predicts. All 40 parity images,
    # so int8's bar means what it means in the parity check (on 10 images one disagreement was 10 points).
    check = run_check_data(lite0_probe).check
    images = []
    for i in range(len(check)):
        images.append(tmp_path / f"{i}.png")
        check.load(i).save(images[-1])
    run = load_run(lite0_probe)
    expected = [p["top"][0]["class"] for p in predict_images(run, images)]
    for model_file in (onnx.files[0], *mnn.files):
        got = [p["top"][0]["class"] for p in predict_images(model_file, images)]
        agreement = sum(a == b for a, b in zip(got, expected, strict=True)) / len(expected)
        assert agreement >= (0.8 if "int8" in model_file.name else 1.0), model_file


def test_probe_on_the_cut_onnx_matches_the_native_probe(lite0_probe, fmnist_train, fmnist_test, tmp_path):
    """Cut at the pooling node, the exported file is the frozen backbone: the same probe, the same accuracy."""
    model_file = lite0_probe / "export" / "model.onnx"
    if not model_file.is_file():
        export_run(lite0_probe, "onnx")
    result = train_from_model_file(
        model_file,
        POOL_NODE,
        fmnist_train,
        config=TrainConfig(**{k: v for k, v in CONFIG.items() if k not in ("backbone", "image_size")}),
        test=fmnist_test,
        run_dir=tmp_path / "cut",
    )
    logits, labels = run_logits(load_run(lite0_probe), fmnist_test)
    native = float((logits.argmax(1) == labels).float().mean())
    print(
        f"test accuracy ({len(fmnist_test)} images): native probe {native:.4f}, probe on cut ONNX {result.test_acc:.4f}"
    )
    assert result.feature_dim == 1280
    assert native > 0.5 and abs(result.test_acc - native) <= 0.02
