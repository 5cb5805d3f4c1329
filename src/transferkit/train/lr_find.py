"""The learning-rate range test: train briefly at exponentially rising rates, watch the loss, suggest a rate.

The test (Smith 2017, "Cyclical learning rates"; fastai's and Lightning's ``lr_find``) raises the rate from
`START_LR` to `END_LR` geometrically, one step per batch, records the training loss, smooths it with a
bias-corrected exponential moving average, and stops once the smoothed loss exceeds `DIVERGE` times its minimum.
The rate swept is the run's ``--lr`` (the pretrained layers' rate): every parameter group keeps the ratio the
strategy gives it (the new head x `head_lr_mult`, a scratch run x `scratch_lr_mult`), so the suggestion can be
passed to ``--lr`` as it is. The model's weights, BatchNorm statistics, trainable flags and every RNG are put back
afterwards, so a run that uses the suggestion trains as if the test had never run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace

import torch

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageSource
from transferkit.models import apply_freeze, head_keys
from transferkit.models.freezing import set_train_mode
from transferkit.strategies import Phase, Strategy
from transferkit.train._depthwise import fast_depthwise
from transferkit.train._kernel_choices import KernelChoices
from transferkit.train._loaders import LoaderFactory
from transferkit.train._probe import probe_features
from transferkit.train._rng import capture_rng, restore_rng
from transferkit.train.distributed import DistContext
from transferkit.train.loop import StepSettings
from transferkit.train.optim import build_optimizer, param_groups
from transferkit.train.precision import MixedPrecision
from transferkit.train.setup import (
    RunData,
    RunModel,
    Session,
    prepare_data,
    resolve_device,
    seed_everything,
    setup_model,
    step_settings,
)

__all__ = [
    "DIVERGE",
    "END_LR",
    "RULES",
    "START_LR",
    "LrFindError",
    "LrFindResult",
    "find_lr",
    "gradient_phase",
    "range_test",
    "suggest_lr",
]

START_LR = 1e-7
END_LR = 1.0
DIVERGE = 4.0
"""The test stops once the smoothed loss is this many times its lowest value so far."""
SMOOTHING = 0.98
"""Weight of the past in the exponential moving average of the loss (fastai's value)."""
MIN_STEPS = 30
"""At least this many steps, however small the data: fewer points leave no curve to read."""
EPOCHS = 3
"""On small data the test takes about this many epochs' batches (capped by ``lr_find_steps``)."""
RULES = ("minimum", "valley", "steepest")
"""How the rate is read off the smoothed curve (see `suggest_lr`); the first is the default."""


class LrFindError(ValueError):
    """The strategy trains nothing by gradient steps (an L-BFGS probe), so it has no learning rate to find."""


@dataclass
class LrFindResult:
    """The measured curve and the suggested rate; saved as ``lr_find.json``."""

    lrs: list[float]
    """``--lr`` at each step (pretrained layers; each group at its own multiple, see `group_multipliers`)."""
    losses: list[float]
    """Training loss of each step's batch."""
    smoothed: list[float]
    """Bias-corrected exponential moving average of `losses`."""
    suggestion: float
    """The suggested ``--lr``: one of `lrs`."""
    rule: str
    phase: str
    """The strategy's phase whose parameter groups were swept."""
    group_multipliers: dict[str, float] = field(default_factory=dict)
    """Each parameter group's rate over ``--lr`` (head 10 by default)."""
    stopped: str = ""
    """Why the test ended: after all its steps, or where the loss diverged."""

    @property
    def index(self) -> int:
        return self.lrs.index(self.suggestion)

    def to_dict(self) -> dict:
        return asdict(self)


def suggest_lr(lrs: list[float], smoothed: list[float], rule: str = "minimum") -> int:
    """The index of the suggested rate on the smoothed curve.

    Rules:
        minimum (the default): a tenth of the rate at the lowest smoothed loss (the ``lr_min`` of fastai's earlier
            lr_find), snapped to a measured rate. In BENCHMARKS.md ("Learning-rate finder") it came within 0.1
            points of the best of a 4-rate grid on one dataset and 1.7 below it on the other, where valley's
            suggestion lost 5.2 and 25.5 points.
        valley: fastai's current default. The longest stretch over which the loss keeps falling (the longest decreasing
            subsequence), and the point 1/2 of the way down it: far enough from the start to learn quickly,
            far enough from the end not to be at the edge of divergence.
        steepest: where the loss falls fastest per decade of rate (most negative slope in log rate), before the
            minimum; noisier on short tests.

    Raises:
        ValueError: An unknown rule, or a curve too short to read.
    """
    if rule not in RULES:
        raise ValueError(f"lr-find rule {rule!r}: choose one of {', '.join(RULES)}")
    n = len(smoothed)
    if n < 3:
        raise ValueError(f"the range test measured {n} steps; at least 3 are needed to suggest a rate")
    lowest = min(range(n), key=smoothed.__getitem__)
    if rule == "minimum":
        target = lrs[lowest] / 10
        return min(range(lowest + 1), key=lambda i: abs(math.log(lrs[i] / target)))
    if rule == "steepest":
        end = max(lowest, 2)
        slopes = [
            (smoothed[i + 1] - smoothed[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1]) for i in range(1, min(end, n - 1))
        ]
        return 1 + min(range(len(slopes)), key=slopes.__getitem__)
    return _valley(smoothed)


def _valley(losses: list[float]) -> int:
    """Half-way down the longest decreasing subsequence (O(n^2), n is a few hundred at most)."""
    n = len(losses)
    length = [1] * n
    start = [0] * n
    for i in range(n):
        start[i] = i
        for j in range(i):
            if losses[i] < losses[j] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    return start[end] + (end - start[end]) // 2


def gradient_phase(strategy: Strategy, config: TrainConfig) -> Phase:
    """The strategy's first phase that takes gradient steps at ``--lr`` (not a probe solved by L-BFGS).

    Its `lr` is returned relative to ``--lr`` (computed with ``lr: 1``), e.g. 10 for a scratch run.
    """
    for phase in strategy.phases(replace(config, lr=1.0)):
        if not (phase.probe and config.feature_cache and config.head_solver == "lbfgs"):
            return phase
    raise LrFindError(
        f"strategy {strategy.name} with the L-BFGS head solver has no learning rate: the head is solved, not "
        "stepped (use --head-solver minibatch to find one for the mini-batch head)"
    )


def find_lr(
    config: TrainConfig,
    train: ImageSource,
    *,
    steps: int | None = None,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    rule: str = "minimum",
) -> LrFindResult:
    """The range test for `config.strategy` on `train`, built as `train_run` would build the run (nothing written).

    The validation split is taken off first, as in training, so the test sees only the images training would.

    Example:
        >>> found = find_lr(TrainConfig(strategy="full"), fashion_mnist(folder, "train"))   # doctest: +SKIP
        >>> found.suggestion                                                                # doctest: +SKIP
        0.00042
    """
    from transferkit.strategies import get_strategy

    if config.strategy == "auto":
        raise ValueError("lr-find needs a strategy (auto is decided from the data by train and advise)")
    strategy = get_strategy(config.strategy)
    config = replace(config.with_recipe(len(train)), lr=None)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    amp = MixedPrecision(config.precision, device, channels_last=config.channels_last)
    from transferkit.data.feature_cache import cache_root

    kernels = KernelChoices.for_machine(cache_root(config.cache_dir), None)
    session = Session(None, DistContext(), device, amp, None, kernels=kernels)  # type: ignore[arg-type]  # no folder
    data = prepare_data(config, session, train, None)
    run_model = setup_model(config, strategy, session, data)
    settings = step_settings(config, strategy, session, run_model, data)
    return range_test(
        config, strategy, data, run_model, settings, steps=steps, start_lr=start_lr, end_lr=end_lr, rule=rule
    )


def range_test(
    config: TrainConfig,
    strategy: Strategy,
    data: RunData,
    run_model: RunModel,
    settings: StepSettings,
    *,
    steps: int | None = None,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    rule: str = "minimum",
    kernels: KernelChoices | None = None,
) -> LrFindResult:
    """Run the range test on `run_model`'s model with the strategy's parameter groups; the model is left as it was.

    Args:
        steps: Steps of the test; default about `EPOCHS` epochs of `data`, between `MIN_STEPS` and
            ``config.lr_find_steps``.
        start_lr: First ``--lr`` of the sweep.
        end_lr: Last ``--lr`` of the sweep (the test usually stops before, at divergence).
        rule: How the rate is read off the curve (`suggest_lr`).
        kernels: The run's depthwise-gradient kernel choices (`Session.kernels`); None times each shape afresh.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr-find needs 0 < start ({start_lr:g}) < end ({end_lr:g})")
    phase = gradient_phase(strategy, config)
    model, device = run_model.model, settings.device
    loaders = LoaderFactory(config, run_model.preprocessing, settings.dist, device)
    probe = phase.probe and config.feature_cache
    if probe:  # as the phase trains: the head steps on the frozen backbone's features, extracted once (cached)
        feats, labels, vfeats, vlabels = probe_features(model, config, run_model.preprocessing, data.train, data.val)
        loader, _, _ = loaders.tensors((feats, labels), (vfeats, vlabels), shard=True, val_batch=256)
        module = model.get_classifier()
    else:
        loader, _ = loaders.images(data.train, True)
        module = model
    if steps is None:
        steps = min(config.lr_find_steps, max(MIN_STEPS, EPOCHS * len(loader)))
    saved = _Saved(model)
    try:
        apply_freeze(model, phase.freeze.plan(model))
        groups = param_groups(
            module, [] if probe else head_keys(model), base_lr=phase.lr * start_lr,
            head_lr_mult=1.0 if probe else phase.head_lr_mult, weight_decay=config.weight_decay,
        )  # fmt: skip
        if probe:  # only the head trains; say so in the figure
            groups = [{**g, "name": g["name"].replace("backbone", "head")} for g in groups]
        multipliers = {g["name"]: g["lr"] / start_lr for g in groups}
        optimizer = build_optimizer(groups, config)
        growth = (end_lr / start_lr) ** (1 / max(1, steps - 1))
        enabled = config.fast_depthwise and device.type == "cpu" and not probe
        with fast_depthwise(model, enabled, kernels):
            lrs, losses, smoothed, stopped = _sweep(module, loader, optimizer, settings, steps, start_lr, growth)
    finally:
        saved.restore(model)
    if len(smoothed) < 3:
        raise ValueError(
            f"the loss diverged within {len(smoothed)} steps of the range test (from --lr {start_lr:g}); "
            "start it lower (--start-lr)"
        )
    best = suggest_lr(lrs, smoothed, rule)
    result = LrFindResult(lrs, losses, smoothed, lrs[best], rule, phase.name, multipliers, stopped)
    console.print(
        f"lr-find ({phase.name}): {len(lrs)} steps from {lrs[0]:.1e} to {lrs[-1]:.1e}, {stopped}; "
        f"suggested --lr {result.suggestion:.2e} ({rule} rule)"
    )
    return result


def _sweep(model, loader, optimizer, settings: StepSettings, steps: int, start_lr: float, growth: float):
    """The steps of the test: (rates, raw losses, smoothed losses, why it stopped)."""
    device, amp, loss_fn = settings.device, settings.amp, settings.loss_fn
    set_train_mode(model, settings.keep_bn_stats)
    base = [g["lr"] for g in optimizer.param_groups]
    lrs, losses, smoothed = [], [], []
    average, lowest, epoch = 0.0, math.inf, 0
    while True:
        epoch += 1
        sampler = getattr(loader, "batch_sampler", None) or getattr(loader, "sampler", None)
        if hasattr(sampler, "set_position"):
            sampler.set_position(epoch)
        for inputs, targets in loader:
            k = len(lrs)
            factor = growth**k
            for group, lr in zip(optimizer.param_groups, base, strict=True):
                group["lr"] = lr * factor
            inputs, targets = amp.inputs(inputs.to(device)), targets.to(device)
            with amp.autocast():
                loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            if not math.isfinite(value):
                return lrs, losses, smoothed, f"stopped at step {k + 1}: the loss is not finite"
            lrs.append(start_lr * factor)
            losses.append(value)
            amp.backward(loss, optimizer)
            amp.step(optimizer)
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed.append(average / (1 - SMOOTHING ** (k + 1)))
            lowest = min(lowest, smoothed[-1])
            if smoothed[-1] > DIVERGE * lowest:
                return lrs, losses, smoothed, f"stopped at step {k + 1}: the loss diverged ({DIVERGE:g}x its minimum)"
            if len(lrs) >= steps:
                return lrs, losses, smoothed, "all steps run"


class _Saved:
    """The model's weights and buffers, trainable flags and mode, and every RNG: what the test must put back."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.state = copy.deepcopy(model.state_dict())
        self.flags = [p.requires_grad for p in model.parameters()]
        self.training = model.training
        self.rng = capture_rng()

    def restore(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.state)
        for param, flag in zip(model.parameters(), self.flags, strict=True):
            param.requires_grad_(flag)
            param.grad = None
        model.train(self.training)
        restore_rng(self.rng)
