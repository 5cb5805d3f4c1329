"""MixUp and CutMix of training batches (torchvision's v2 transforms), drawn so that a resumed epoch mixes alike."""

from __future__ import annotations

import torch

__all__ = ["BatchMix"]


class BatchMix:
    """Mixes each training batch with MixUp, CutMix, or one of the two at random (half the batches each).

    The targets become class probabilities (the soft labels the mix implies), which cross-entropy takes as they are.
    A batch's draw depends only on the run's seed, the epoch and the step, and comes from a forked random state, so
    it is the same after a resume and the model's random state is untouched.

    Example:
        >>> mix = BatchMix(num_classes=3, mixup=0.2, cutmix=0.0, seed=0)
        >>> images, soft = mix(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), epoch=1, step=0)
        >>> tuple(soft.shape), bool(torch.allclose(soft.sum(1), torch.ones(4)))
        ((4, 3), True)
    """

    def __init__(self, num_classes: int, mixup: float, cutmix: float, seed: int) -> None:
        from torchvision.transforms import v2

        ops = []
        if mixup > 0:
            ops.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        if cutmix > 0:
            ops.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        if not ops:
            raise ValueError("BatchMix needs mixup or cutmix above 0")
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
        self.seed = int(seed)

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, *, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed batch and its soft targets (float, one row of class probabilities per image)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_003 + step) % 2**63)
            return self.op(inputs, targets)
