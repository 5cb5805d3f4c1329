"""What runs after every optimiser step besides the step itself: an average of the weights (EMA) and the pull toward
the pretrained weights (L2-SP). Each keeps its state in the resumable checkpoint, so a resumed run continues it."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["AnchorPull", "WeightEMA", "step_extras"]


class WeightEMA:
    """An exponential moving average of a module's weights, updated after every optimiser step.

    The average is a copy of the module (`module`, in eval mode, no gradients); validation and the best checkpoint
    use it instead of the weights that step. Its decay warms up as ``min(decay, (1 + t) / (10 + t))`` after t steps
    (as timm's EMA does), so the average of a short run is not stuck near the weights it started from. Buffers
    (BatchNorm statistics) are copied, not averaged.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> ema = WeightEMA(net, opt, decay=0.9)
        >>> net(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> ema.updates, bool((ema.module.weight != net.weight).any())
        (1, True)
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer, decay: float) -> None:
        self.decay, self.updates = float(decay), 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        pairs = [
            (mine, theirs)
            for (_, theirs), mine in zip(module.named_parameters(), self.module.parameters(), strict=True)
            if theirs.requires_grad
        ]
        self._averaged, self._live = [m for m, _ in pairs], [t for _, t in pairs]
        self._buffers = list(zip(self.module.buffers(), module.buffers(), strict=True))
        self._handle = optimizer.register_step_post_hook(self._after_step)

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._averaged, [p.detach() for p in self._live], 1.0 - decay)
        for mine, theirs in self._buffers:
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])

    def close(self) -> None:
        self._handle.remove()


class AnchorPull:
    """L2-SP (Li et al., 2018) in decoupled form: after every optimiser step each anchored weight moves toward its
    value at the start of fine-tuning, ``w -= lr * strength * (w - w0)`` with its group's current rate.

    It replaces weight decay toward zero for those weights (the caller sets their groups' weight_decay to 0). The
    anchors are the weights when it is made; a resumed run restores them from the checkpoint.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.5)
        >>> start = net.weight.detach().clone()
        >>> pull = AnchorPull(opt, [net.weight], strength=1.0)
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)
        >>> opt.step()  # no gradients: only the pull acts, halving the distance
        >>> torch.allclose(net.weight, start + 0.5)
        True
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], strength: float) -> None:
        self.strength = float(strength)
        ids = {id(p) for p in params}
        # Groups by position: loading an optimiser state (a resume) replaces its group dicts, and the rates with them.
        self._groups = [(i, [p for p in g["params"] if id(p) in ids]) for i, g in enumerate(optimizer.param_groups)]
        self._groups = [(i, ps) for i, ps in self._groups if ps]
        self.anchors = [p.detach().clone() for _, ps in self._groups for p in ps]
        self._handle = optimizer.register_step_post_hook(self._after_step)

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs) -> None:
        anchors = iter(self.anchors)
        for index, params in self._groups:
            weight = optimizer.param_groups[index]["lr"] * self.strength
            torch._foreach_lerp_([p.data for p in params], [next(anchors) for _ in params], min(weight, 1.0))

    def state_dict(self) -> dict:
        return {"anchors": self.anchors}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.anchors, state["anchors"], strict=True):
            mine.copy_(saved)

    def close(self) -> None:
        self._handle.remove()


def step_extras(module: nn.Module, optimizer: torch.optim.Optimizer, *, ema: float, l2_sp: float) -> dict:
    """The after-step extras a fine-tuning phase asks for, by name (empty when neither is set).

    With `l2_sp`, the pretrained layers' decayed groups (`param_groups` names them ``backbone...``) are anchored
    and their weight decay set to 0.

    Args:
        module: What the phase trains (the average copies it).
        optimizer: The phase's optimiser, over `param_groups`.
        ema: Decay of the weight average (0: none).
        l2_sp: Strength of the pull toward the starting weights (0: none).
    """
    extras: dict = {}
    if l2_sp > 0:
        anchored = [g for g in optimizer.param_groups if str(g.get("name", "")).startswith("backbone")]
        anchored = [g for g in anchored if g["weight_decay"] > 0]
        for group in anchored:
            group["weight_decay"] = 0.0
        extras["l2_sp"] = AnchorPull(optimizer, [p for g in anchored for p in g["params"]], l2_sp)
    if ema > 0:
        extras["ema"] = WeightEMA(module, optimizer, ema)
    return extras
