"""`partial` without augmentation: run the frozen first layers once and train the rest on their cached output.

When the first stages are frozen (in eval mode) and the images are not augmented, the frozen stages compute the
same activations for an image in every epoch. Those activations at the frozen boundary are computed once, kept in
memory, and fed to the model with the frozen modules passed through, so each epoch runs the trainable layers only.

The boundary is found, not assumed: one forward pass with hooks records which modules run, in which order, before
the first module with trainable parameters. The outermost fully frozen ones among them form the prefix; the output
of the last is the boundary. The split is then checked: the model fed the boundary activations, with the prefix
passed through, must give the same logits as the model fed the images. A model whose forward does more between
those modules than calling them (a residual connection across the boundary, arithmetic in `forward`) fails that
check, and training goes the ordinary way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from transferkit._console import console
from transferkit._console import progress as progress_bar
from transferkit.train._interrupt import stop_if_requested

__all__ = ["CachedPrefix", "cache_prefix", "find_frozen_prefix"]

logger = logging.getLogger(__name__)


@dataclass
class CachedPrefix:
    """The frozen prefix and the activations at its boundary for the training and validation images."""

    modules: list[tuple[str, nn.Module]]
    train: tuple[torch.Tensor, torch.Tensor]
    """Boundary activations and labels of the training images, in the loader's order."""
    val: tuple[torch.Tensor, torch.Tensor]
    megabytes: float

    def skip(self) -> Callable[[], None]:
        """Make the prefix pass its input through (the model then takes boundary activations); returns the undo."""
        return _pass_through(self.modules)


class _Boundary(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        self.output = output


def find_frozen_prefix(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The outermost fully frozen modules that run, and finish, before the first module with trainable parameters.

    Args:
        model: The model with its freezing applied (``requires_grad`` set).
        sample: A small input batch.

    Returns:
        ``(name, module)`` in call order; empty when the first module to run already trains (or nothing trains).
    """
    named = {module: name for name, module in model.named_modules() if name}
    events: list[tuple[str, str]] = []
    seen: set[str] = set()

    def before(module, _inputs):
        if named[module] not in seen:
            events.append(("pre", named[module]))

    def after(module, _inputs, _output):
        if named[module] not in seen:
            seen.add(named[module])
            events.append(("post", named[module]))

    handles = [m.register_forward_pre_hook(before) for m in named]
    handles += [m.register_forward_hook(after) for m in named]
    try:
        with _evaluating(model), torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    owns_trainable = {n for n, m in modules.items() if any(p.requires_grad for p in m.parameters(recurse=False))}
    first = next((i for i, (kind, n) in enumerate(events) if kind == "pre" and n in owns_trainable), None)
    if first is None:
        return []
    finished = {n for kind, n in events[:first] if kind == "post"}
    frozen = [n for kind, n in events[:first] if kind == "pre" and n in finished and _fully_frozen(modules[n])]
    outermost = [n for n in frozen if not any(n.startswith(other + ".") for other in frozen)]
    return [(n, modules[n]) for n in outermost]


def cache_prefix(
    model: nn.Module,
    train_batches: DataLoader,
    val_batches: DataLoader,
    *,
    max_megabytes: float,
    device: torch.device,
) -> CachedPrefix | None:
    """Boundary activations of every training and validation image, or None when the ordinary path must be taken.

    None (with the reason printed) when no frozen prefix runs first, when the split does not reproduce the model's
    logits, or when the activations would take more than `max_megabytes` of memory.

    Args:
        model: The model with its freezing applied.
        train_batches: The training images in a fixed order without augmentation, as ``(images, labels)`` batches.
        val_batches: The validation images, likewise.
        max_megabytes: Memory the cached activations may take (training and validation together).
        device: Where the model runs.
    """
    first_images, _ = next(iter(train_batches))
    sample = first_images[:4].to(device)
    prefix = find_frozen_prefix(model, sample)
    if not prefix:
        console.print("prefix cache: no frozen layers run first; training the ordinary way")
        return None
    last = prefix[-1][1]
    with _evaluating(model):
        with torch.inference_mode():
            want = model(sample)
            acts = _boundary(model, last, sample)
            undo = _pass_through(prefix)
            try:
                got = model(acts)
            finally:
                undo()
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
            console.print("prefix cache: this model's frozen layers cannot be split off; training the ordinary way")
            return None
        n_images = len(train_batches.dataset) + len(val_batches.dataset)  # type: ignore[arg-type]
        per_image = acts[0].numel() * acts.element_size() / 2**20
        estimate = per_image * n_images
        if estimate > max_megabytes:
            console.print(
                f"prefix cache: the activations at {prefix[-1][0]} would take {estimate:,.0f} MB, more than "
                f"prefix_cache_mb {max_megabytes:,.0f}; training the ordinary way"
            )
            return None
        train = _all_boundary(model, last, train_batches, device, "prefix cache: train")
        val = _all_boundary(model, last, val_batches, device, "prefix cache: val")
    megabytes = (train[0].numel() + val[0].numel()) * train[0].element_size() / 2**20
    console.print(
        f"prefix cache: {len(prefix)} frozen modules ({prefix[0][0]} .. {prefix[-1][0]}) run once; activations "
        f"{tuple(train[0].shape[1:])} per image, {megabytes:,.0f} MB in memory"
    )
    return CachedPrefix(prefix, train, val, megabytes)


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """`model` in eval mode within the block; every module's own mode is put back after it."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.train(mode)


def _fully_frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def _pass_through(prefix: list[tuple[str, nn.Module]]) -> Callable[[], None]:
    def identity(x, *args, **kwargs):
        return x

    for _, module in prefix:
        module.forward = identity

    def undo() -> None:
        for _, module in prefix:
            module.__dict__.pop("forward", None)

    return undo


def _boundary(model: nn.Module, last: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The output of `last` for `images`; the rest of the model does not run."""

    def stop(_module, _inputs, output):
        raise _Boundary(output)

    handle = last.register_forward_hook(stop)
    try:
        model(images)
    except _Boundary as boundary:
        return boundary.output
    finally:
        handle.remove()
    raise RuntimeError("the frozen prefix's last module did not run")


def _all_boundary(
    model: nn.Module, last: nn.Module, batches: Iterable, device: torch.device, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    outputs, labels = [], []
    with progress_bar() as bar:
        task = bar.add_task(what, total=len(batches), status="")  # type: ignore[arg-type]
        for images, targets in batches:
            stop_if_requested(what)
            outputs.append(_boundary(model, last, images.to(device)).cpu())
            labels.append(targets)
            bar.update(task, advance=1)
    return torch.cat(outputs), torch.cat(labels)
