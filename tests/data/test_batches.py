import numpy as np
import pytest
import torch
from torchvision import transforms as T

from transferkit.data import ImageSource, Preprocessing
from transferkit.data.batches import ArrayBatches
from transferkit.data.transforms import build_transforms

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _source(n=6, side=12, rgb=True, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, side, side, 3) if rgb else (n, side, side)
    return ImageSource(classes=["a", "b"], labels=np.arange(n) % 2, arrays=rng.integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.parametrize("rgb", [True, False])
def test_evaluation_batches_equal_the_per_image_transform(rgb):
    source = _source(rgb=rgb)
    pre = Preprocessing(image_size=8, mean=MEAN, std=STD, crop_pct=1.0)
    images, labels = ArrayBatches(source, pre)[[4, 1, 3]]
    # The per-image PIL path of the same view: a centre crop of 8 from the 12 px image (no resize at crop_pct 1).
    want = torch.stack(
        [T.Compose([T.CenterCrop(8), T.ToTensor(), T.Normalize(MEAN, STD)])(source.load(i)) for i in (4, 1, 3)]
    )
    torch.testing.assert_close(images, want, rtol=1e-5, atol=1e-5)
    assert labels.tolist() == [0, 1, 1]
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert build_transforms(pre, train=False)(source.load(0)).shape == images.shape[1:]


def test_training_crops_come_from_the_padded_image_and_depend_only_on_the_seed():
    source = _source(n=64, side=8)
    batches = ArrayBatches(source, Preprocessing(8, [0.0] * 3, [1 / 255] * 3), train=True, padding=2)
    items = [(i, 1000 + i) for i in range(64)]
    first, labels = batches[items]
    again, _ = batches[items]
    other, _ = batches[[(i, 7) for i in range(64)]]
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert labels.tolist() == (np.arange(64) % 2).tolist()
    # Every crop is an 8x8 window of the image padded with 2 black pixels, possibly mirrored.
    for i in range(64):
        padded = torch.nn.functional.pad(torch.from_numpy(source.arrays[i]).permute(2, 0, 1).float(), (2, 2, 2, 2))
        windows = [padded[:, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(first[i], w) or torch.equal(first[i], w.flip(-1)) for w in windows)
    originals = torch.from_numpy(source.arrays).permute(0, 3, 1, 2).float()
    shifted = sum(not torch.equal(first[i], originals[i]) for i in range(64))
    assert shifted > 32  # most images were moved or flipped


def test_erasing_blanks_a_rectangle_in_the_chosen_fraction():
    source = ImageSource(classes=["a"], labels=np.zeros(200, np.int64), arrays=np.full((200, 16, 16), 255, np.uint8))
    batches = ArrayBatches(source, Preprocessing(16, [0.5] * 3, [0.5] * 3), train=True, flip=False, erase=0.5)
    images, _ = batches[[(i, 3) for i in range(200)]]
    erased = (images == 0).flatten(1).any(1)
    assert 0.35 < erased.float().mean().item() < 0.65
    assert (images[~erased] == 1).all()


def test_file_sources_and_small_images_are_refused():
    files = ImageSource(classes=["a"], labels=np.zeros(1, np.int64), paths=["x.png"])
    with pytest.raises(ValueError, match="array-backed"):
        ArrayBatches(files, Preprocessing(8, MEAN, STD))
    with pytest.raises(ValueError, match="smaller than image_size"):
        ArrayBatches(_source(side=6), Preprocessing(8, MEAN, STD))
