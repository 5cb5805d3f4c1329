"""Running one phase of a strategy: its model, loaders and optimiser, the time budget, resume, then the loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.models import FreezePlan, apply_freeze, head_keys
from transferkit.strategies import Phase
from transferkit.train import _budget
from transferkit.train._budget import TimeBudget
from transferkit.train._depthwise import fast_depthwise
from transferkit.train._fold_bn import folded_batchnorm
from transferkit.train._loaders import LoaderFactory
from transferkit.train._prefix_cache import cache_prefix
from transferkit.train._probe import probe_features, run_lbfgs_phase
from transferkit.train._rng import restore_rng
from transferkit.train._step_extras import step_extras
from transferkit.train._tracker import PhaseContext, Tracker
from transferkit.train.checkpoint import CheckpointError
from transferkit.train.features import augmented_features
from transferkit.train.loop import EpochProgress, EpochResult, StepSettings, fit
from transferkit.train.optim import build_optimizer, build_scheduler, param_groups
from transferkit.train.setup import RunData, RunModel, Session

__all__ = ["PhaseRunner"]


@dataclass
class _Trainable:
    """What a gradient phase trains: the module that steps, its loaders, parameter groups and generators."""

    module: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    groups: list[dict]
    generators: dict[str, torch.Generator]


class PhaseRunner:
    """Runs a strategy's phases one at a time, continuing an interrupted one exactly after a resume."""

    def __init__(
        self,
        config: TrainConfig,
        session: Session,
        data: RunData,
        run_model: RunModel,
        settings: StepSettings,
        tracker: Tracker,
        budget: TimeBudget,
        *,
        features: Callable[[], tuple[torch.Tensor, ...]] | None = None,
    ) -> None:
        self.config, self.session, self.data, self.run_model = config, session, data, run_model
        self.settings, self.tracker, self.budget = settings, tracker, budget
        self.model = run_model.model
        self.loaders = LoaderFactory(config, run_model.preprocessing, session.dist, session.device)
        self.state = session.point.state if session.point is not None else None
        """The resume state, until the phase it belongs to has taken it."""
        self.features = features
        self.history: list[EpochResult] = []
        self.plan: FreezePlan | None = None
        self.prefix_cache: dict | None = None
        self._undo: list = []

    def done_before(self, index: int, phase: Phase) -> bool:
        """The phase had finished before the interruption this run resumes from."""
        return self.state is not None and (self.state["phase_index"] > index or self.state["epoch"] > phase.last_epoch)

    def run(self, index: int, phase: Phase, final: Phase) -> list[EpochResult]:
        """Train `phase` (the `index`-th); `final` is the run's last phase (where a budget stop is announced)."""
        mid_phase = self.state is not None and self.state["phase_index"] == index
        if index > 0 and not mid_phase:
            self.tracker.reset_patience()
        self.plan = phase.freeze.plan(self.model)
        apply_freeze(self.model, self.plan)
        if index > 0:
            console.print(f"{phase.announce or phase.name}: trainable {self.plan.trainable_params:,} parameters")
        if phase.probe and self.config.feature_cache and self.config.head_solver == "lbfgs":
            return self._solve(index, phase, mid_phase)
        return self._train(index, phase, final, mid_phase)

    def close(self) -> None:
        """Undo what the phases changed in the model (a prefix-cached model takes images again)."""
        while self._undo:
            self._undo.pop()()

    def _solve(self, index: int, phase: Phase, mid_phase: bool) -> list[EpochResult]:
        """The probe's head by full-batch L-BFGS on cached features (deterministic, so a resume replays it)."""
        first = int(self.state["epoch"]) if mid_phase else phase.first_epoch
        if self.state is not None:
            restore_rng(self.state["rng"], {})
        self.state = None
        features = self._probe_features()
        return run_lbfgs_phase(
            self.model, features, self.config, self.tracker, index=index, name=phase.name, epochs=phase.epochs,
            first_epoch=phase.first_epoch, start_epoch=first, fit_on=self._augmented(phase, features),
        )  # fmt: skip

    def _augmented(self, phase: Phase, features: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        """Clean and augmented training features with their labels, for a probe that a fine-tune phase follows."""
        config = self.config
        if not (phase.augmented_views and config.augment) or self.features is not None:
            return None
        extra = augmented_features(
            self.model, self.data.train, self.run_model.preprocessing, views=phase.augmented_views, seed=config.seed,
            **config.augment_options(),
        )  # fmt: skip
        labels = features[1]
        return torch.cat([features[0], torch.from_numpy(extra)]), labels.repeat(phase.augmented_views + 1)

    def _train(self, index: int, phase: Phase, final: Phase, mid_phase: bool) -> list[EpochResult]:
        """A phase of gradient steps: budget, schedule, resume, then `fit`."""
        config, settings, tracker = self.config, self.settings, self.tracker
        is_final = phase == final
        parts = self._trainable(phase)
        optimizer = build_optimizer(parts.groups, config)
        wanted = phase.epochs
        epochs = self.budget.epochs(
            phase.name, phase.epochs, lambda: self._measure(parts, optimizer), self.session.dist
        )  # the budget applies only to phases that start in this process, or the saved plan to resumed ones
        phase = replace(phase, epochs=epochs)
        # After the budget's timed steps (which put the weights back). Fine-tuning only: a probe on cached features
        # trains a head that the best checkpoint does not hold alone.
        tunes = not (phase.probe and config.feature_cache)
        extras = step_extras(parts.module, optimizer, ema=config.ema, l2_sp=config.l2_sp) if tunes else {}
        tracker.deadline = self.budget.deadline
        tracker.final_epoch = phase.last_epoch if is_final else final.last_epoch
        steps = len(parts.train_loader)
        scheduler = build_scheduler(
            optimizer, total_steps=phase.epochs * steps, warmup_steps=int(config.warmup_epochs * steps)
        )
        first, start = phase.first_epoch, None
        if mid_phase:
            first, start = self._resume(phase, optimizer, scheduler, extras)
        if self.state is not None:
            restore_rng(self.state["rng"], parts.generators)
            self.state = None
        replan, most = None, phase.last_epoch
        if is_final and self.budget.active:
            most = phase.first_epoch + wanted - 1  # the loop may run to the epochs asked for; the tracker ends it

            def replan(last_epoch: int) -> None:  # the budget's plan did not fit the real pace: decay to zero there
                epochs = last_epoch - phase.first_epoch + 1
                factor = scheduler.lr_lambdas[0]
                factor.replan(epochs * steps)
                for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                    group["lr"] = base * factor(scheduler.last_epoch)  # the next step already follows the new decay
                self.budget.replan(phase.name, epochs, self.session.dist)

        tracker.phase = PhaseContext(
            index, phase.name, optimizer, scheduler, parts.generators, config.checkpoint_every_steps if
            self._saves_mid_epoch(phase) else 0, extras, extras["ema"].module if "ema" in extras else None,
            replan, first, most,
        )  # fmt: skip
        # Only what trains is wrapped: a cached-feature probe wraps the head, never the frozen backbone.
        trainer = self.session.dist.wrap(parts.module, self.session.device)
        if config.compile:
            trainer = torch.compile(trainer)
        with self._step_kernels(parts.module):
            history = fit(
                trainer, parts.train_loader, parts.val_loader, settings if tunes else replace(settings, mix=None),
                epochs=most - first + 1,
                optimizer=optimizer, scheduler=scheduler, phase=phase.name, first_epoch=first, on_epoch=tracker,
                start=start, on_step=tracker.on_step, eval_model=extras["ema"].module if "ema" in extras else None,
            )  # fmt: skip
        del trainer  # its gradient hooks must not outlive the phase (lp-ft wraps the head again in the next)
        for extra in extras.values():
            extra.close()
        return history

    def _trainable(self, phase: Phase) -> _Trainable:
        """The module, loaders and parameter groups of a gradient phase."""
        config = self.config
        if phase.probe and config.feature_cache:
            feats, labels, vfeats, vlabels = self._probe_features()
            train, val, generator = self.loaders.tensors((feats, labels), (vfeats, vlabels), shard=True, val_batch=256)
            head = self.model.get_classifier()
            groups = param_groups(head, [], base_lr=phase.lr, head_lr_mult=1.0, weight_decay=config.weight_decay)
            return _Trainable(head, train, val, groups, {"train": generator})
        groups = param_groups(
            self.model, head_keys(self.model), base_lr=phase.lr, head_lr_mult=phase.head_lr_mult,
            weight_decay=config.weight_decay, layer_decay=config.layer_decay,
        )  # fmt: skip
        # The weight average validates a copy of the whole model on images, which a prefix cache does not feed.
        prefix = phase.prefix_cache and config.prefix_cache and not config.augment and not config.ema
        prefix = prefix and self.settings.mix is None  # mixing is augmentation: each epoch's inputs differ
        if prefix and not self.session.dist.enabled:
            cached = self._prefix_cached(groups)
            if cached is not None:
                return cached
        (train, generator), (val, _) = (
            self.loaders.images(self.data.train, True),
            self.loaders.images(self.data.val, False),
        )
        return _Trainable(self.model, train, val, groups, {"train": generator})

    def _prefix_cached(self, groups: list[dict]) -> _Trainable | None:
        """Unaugmented images through frozen (eval-mode) layers give the same activations every epoch: run them once."""
        (plain, _), (val, _) = self.loaders.images(self.data.train, False), self.loaders.images(self.data.val, False)
        cached = cache_prefix(
            self.model, plain, val, max_megabytes=self.config.prefix_cache_mb, device=self.session.device
        )
        if cached is None:
            return None
        self._undo.append(cached.skip())
        self.prefix_cache = {
            "boundary": cached.modules[-1][0],
            "modules": [name for name, _ in cached.modules],
            "megabytes": round(cached.megabytes, 1),
        }
        train, val, generator = self.loaders.tensors(
            cached.train, cached.val, shard=False, val_batch=self.config.batch_size
        )
        return _Trainable(self.model, train, val, groups, {"train": generator})

    def _probe_features(self) -> tuple[torch.Tensor, ...]:
        """The frozen backbone in eval mode is a fixed function: one pass gives every epoch's inputs."""
        if self.features is not None:
            return self.features()
        with self.session.dist.main_first():  # rank 0 fills the feature cache, the others read it
            return probe_features(self.model, self.config, self.run_model.preprocessing, self.data.train, self.data.val)

    def _resume(self, phase: Phase, optimizer, scheduler, extras: dict) -> tuple[int, EpochProgress]:
        try:
            optimizer.load_state_dict(self.state["optimizer"])
            scheduler.load_state_dict(self.state["scheduler"])
            saved = self.state.get("extras", {})
            if set(saved) != set(extras):
                raise ValueError(f"it was saved with step extras {sorted(saved)}, this run has {sorted(extras)}")
            for name, extra in extras.items():
                extra.load_state_dict(saved[name])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"cannot resume phase {phase.name!r}: the saved optimiser state does not fit the trainable "
                f"parameters (was the strategy or the set of frozen layers changed?): {exc}"
            ) from None
        return int(self.state["epoch"]), EpochProgress(**self.state["progress"])

    def _measure(self, parts: _Trainable, optimizer):
        with self._step_kernels(parts.module):
            return _budget.measure_epoch(parts.module, parts.train_loader, parts.val_loader, optimizer, self.settings)

    def _saves_mid_epoch(self, phase: Phase) -> bool:
        # Feature-cache epochs take seconds; saving the whole model mid-epoch would cost more than it saves.
        return not (phase.probe and self.config.feature_cache)

    @contextmanager
    def _step_kernels(self, module: nn.Module) -> Iterator[None]:
        """How the steps compute: the depthwise weight-gradient kernels, and BatchNorm folded into convolutions."""
        fast = self._fast_depthwise
        with (
            fast_depthwise(module, fast, self.session.kernels),
            folded_batchnorm(module, self.config.fold_bn, self.session.kernels if fast else None),
        ):
            yield

    @property
    def _fast_depthwise(self) -> bool:
        return self.config.fast_depthwise and self.session.device.type == "cpu"
