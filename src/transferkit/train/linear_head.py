"""A linear head fitted on cached features by full-batch L-BFGS, saved as one ordinary linear layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["LbfgsHead"]

_MIN_STD = 1e-6


class LbfgsHead:
    """Multinomial logistic regression on standardised features, L2 on the weights, solved by L-BFGS.

    On a few thousand cached feature vectors the whole training set is one batch, so a quasi-Newton method
    converges in tens of iterations where mini-batch SGD needs many epochs and a tuned learning rate.
    Features are standardised (zero mean, unit variance per dimension) so one L2 strength fits every
    backbone; `fold_into` folds the standardisation back into the weights, so the saved head takes raw
    features and the checkpoint and exports stay one plain model.

    The solve is deterministic: the same features give the same head, so a resumed run can replay it.

    Example:
        >>> import torch
        >>> x = torch.cat([torch.randn(20, 4) + 3, torch.randn(20, 4) - 3])
        >>> y = torch.tensor([0] * 20 + [1] * 20)
        >>> head = LbfgsHead(x, y, num_classes=2, l2=1e-3)
        >>> head.run(20)
        >>> head.metrics(x, y)[1]
        1.0
    """

    def __init__(
        self,
        features: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        num_classes: int,
        *,
        l2: float = 1e-3,
        label_smoothing: float = 0.0,
        class_weights: torch.Tensor | None = None,
        history: int = 20,
    ) -> None:
        """Prepares the solve.

        Args:
            features: Training features, (N, D).
            labels: Class indices, (N,).
            num_classes: Outputs of the head.
            l2: Penalty ``l2 / 2 * ||W||^2`` on the weights of the standardised problem (not the bias).
            label_smoothing: As in `nn.CrossEntropyLoss`.
            class_weights: Per-class loss weights, as `nn.CrossEntropyLoss`'s `weight` (None: unweighted).
            history: L-BFGS memory (pairs of updates kept).
        """
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.mean = x.mean(0)
        # Constant dimensions (std 0) carry no information; a floor keeps them from dividing by zero.
        self.std = x.std(0, unbiased=False).clamp_min(_MIN_STD)
        self.inputs = (x - self.mean) / self.std
        self.l2 = float(l2)
        self.loss_fn = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
        # Zero initialisation: the start is uniform predictions, and the solve does not depend on any seed.
        self.linear = nn.Linear(x.shape[1], num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.optimizer = torch.optim.LBFGS(
            self.linear.parameters(),
            lr=1.0,
            history_size=history,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
        )
        self.iterations = 0

    def objective(self) -> torch.Tensor:
        loss = self.loss_fn(self.linear(self.inputs), self.labels)
        return loss + 0.5 * self.l2 * self.linear.weight.pow(2).sum()

    def run(self, iterations: int) -> None:
        """`iterations` more L-BFGS iterations (fewer when it has converged); the curvature memory carries over."""
        group = self.optimizer.param_groups[0]
        group["max_iter"], group["max_eval"] = iterations, iterations * 5 // 4

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            loss = self.objective()
            loss.backward()
            return loss

        # The matrices are small (N x D x classes): extra intra-op threads only synchronise, and on a busy
        # machine two contended threads ran this solve 20-40x slower than one (0.3 s vs 5-14 s per 20 steps).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self.optimizer.step(closure)
        finally:
            torch.set_num_threads(threads)
        state = next(iter(self.optimizer.state.values()), {})
        self.iterations = int(state.get("n_iter", 0))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias for raw features: ``W z + b`` with ``z = (x - mean) / std`` is ``(W / std) x + b'``."""
        with torch.no_grad():
            weight = self.linear.weight / self.std
            bias = self.linear.bias - weight @ self.mean
        return weight, bias

    def fold_into(self, linear: nn.Linear) -> None:
        """Copy the folded head into `linear` (same shape), e.g. the model's classifier."""
        weight, bias = self.folded()
        with torch.no_grad():
            linear.weight.copy_(weight.to(linear.weight))
            linear.bias.copy_(bias.to(linear.bias))

    @torch.no_grad()
    def logits(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The folded head's outputs on raw `features`."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        weight, bias = self.folded()
        return x @ weight.T + bias

    @torch.no_grad()
    def metrics(self, features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> tuple[float, float]:
        """Plain cross-entropy and accuracy of the folded head on raw `features`."""
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if len(y) == 0:
            return float("nan"), float("nan")
        logits = self.logits(features)
        return nn.functional.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()
