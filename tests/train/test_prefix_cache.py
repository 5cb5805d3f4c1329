import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit import TrainConfig, from_folder, train_run
from transferkit.models import apply_freeze, build_model, plan_freeze
from transferkit.train import _phases as runner_module
from transferkit.train._prefix_cache import cache_prefix, find_frozen_prefix


def _frozen_tiny(stages=2):
    model = build_model("tiny_resnet", 3, pretrained=False).model
    apply_freeze(model, plan_freeze(model, stages=stages))
    return model


def _batches(n=10, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 3)
    return DataLoader(data, batch_size=4)


def test_prefix_is_the_outermost_frozen_modules_that_run_first():
    model = _frozen_tiny()
    names = [name for name, _ in find_frozen_prefix(model, torch.randn(2, 3, 32, 32))]
    assert names and all(not any(p.requires_grad for p in dict(model.named_modules())[n].parameters()) for n in names)
    assert not any(a != b and b.startswith(a + ".") for a in names for b in names)  # none inside another
    assert find_frozen_prefix(_frozen_tiny(stages=0), torch.randn(2, 3, 32, 32)) == []


def test_cached_activations_reproduce_the_models_logits():
    model = _frozen_tiny().eval()
    train, val = _batches(), _batches(n=6, seed=1)
    cached = cache_prefix(model, train, val, max_megabytes=100, device=torch.device("cpu"))
    assert cached is not None and len(cached.train[0]) == 10 and len(cached.val[0]) == 6
    images = torch.cat([x for x, _ in train])
    with torch.no_grad():
        want = model(images)
        undo = cached.skip()
        got = model(cached.train[0])
        undo()
        again = model(images)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, want)  # the undo gives the model its images back
    assert cached.train[1].tolist() == (torch.arange(10) % 3).tolist()


def test_a_model_that_reads_its_input_after_the_boundary_is_not_split():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.head = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 1)
            self.stem.requires_grad_(False)

        def forward(self, x):
            return (self.head(self.stem(x)) + x).mean((2, 3))

    assert [n for n, _ in find_frozen_prefix(Skip(), torch.randn(2, 3, 8, 8))] == ["stem"]
    loader = _batches(size=8)
    assert cache_prefix(Skip(), loader, loader, max_megabytes=100, device=torch.device("cpu")) is None


def test_over_budget_activations_are_not_cached():
    loader = _batches()
    assert cache_prefix(_frozen_tiny(), loader, loader, max_megabytes=0, device=torch.device("cpu")) is None


def _partial(tmp_path, image_folder, **kwargs):
    config = TrainConfig(
        backbone="tiny_resnet",
        strategy="partial",
        freeze=2,
        epochs=2,
        lr=1e-3,
        batch_size=8,
        image_size=32,
        augment=False,
        seed=0,
        cache_dir=str(tmp_path / "cache"),
        **kwargs,
    )
    return train_run(config, from_folder(image_folder), run_dir=tmp_path / f"run-{kwargs}")


def test_partial_on_cached_activations_trains_like_the_ordinary_path(tmp_path, image_folder, monkeypatch):
    used = []
    real = runner_module.cache_prefix

    def spy(*args, **kwargs):
        used.append(real(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(runner_module, "cache_prefix", spy)
    cached = _partial(tmp_path, image_folder)
    assert used and used[0] is not None
    ordinary = _partial(tmp_path, image_folder, prefix_cache=False)
    assert len(used) == 1
    # Same sample order, same frozen activations: the same training, to float rounding.
    for a, b in zip(cached.history, ordinary.history, strict=True):
        assert abs(a.train_loss - b.train_loss) < 1e-4 and abs(a.val_acc - b.val_acc) < 1e-6
    from transferkit.train import load_checkpoint

    weights = []
    for result in (cached, ordinary):
        model = build_model("tiny_resnet", 3, pretrained=False).model
        load_checkpoint(result.run_dir / "last", model)
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=1e-3, atol=1e-4)
