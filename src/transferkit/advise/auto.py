"""``strategy: auto``: advise on the training data, then train with the plan; the run saves the advice."""

from __future__ import annotations

import json
from pathlib import Path

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageSource

__all__ = ["ADVICE_FILE", "ADVISED_SETTINGS", "resolve_auto", "what_runs"]

ADVICE_FILE = "advice.json"
ADVISED_SETTINGS = ("lr", "head_lr_mult", "scratch_lr_mult", "epochs", "image_size", "class_weights", "select_by")
"""The advised training settings a user's own value replaces (strategy and depth are the plan itself)."""


def resolve_auto(config: TrainConfig, source: ImageSource, run_dir: str | Path, *, resume: bool = False) -> TrainConfig:
    """The config with the advised plan in place of ``strategy: auto``; writes ``advice.json`` to `run_dir`.

    Fields the user set (anything not at its default) are kept. When resuming a run that was advised
    before, its saved plan is reused rather than measured again, so the resumed run trains the same way.

    Args:
        config: A config whose strategy is ``auto``.
        source: The training data (train and validation together when validation is split off later).
        run_dir: The run directory; ``advice.json`` is written there.
        resume: The run continues an interrupted one.
    """
    from transferkit.advise import advise
    from transferkit.train.setup import resolve_device

    path = Path(run_dir) / ADVICE_FILE
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        plan = {k: saved[k] for k in ("strategy", "freeze")}
        console.print(f"strategy auto: reusing the saved advice ({plan['strategy']})")
        return TrainConfig.from_dict({**config.to_dict(), **plan})
    device = resolve_device(config.device)
    advice = advise(source, config.backbone, image_size=config.image_size, optimizer=config.optimizer, device=device)
    console.print(advice.explain(), highlight=False, markup=False)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(advice.to_dict(), indent=2, default=str))
    applied = advice.apply(config)
    console.print(what_runs(advice, applied), highlight=False, markup=False)
    return applied


def what_runs(advice, applied: TrainConfig) -> str:
    """One line saying what will train: the advised plan, and every advised setting the user's value replaces.

    The explanation above it gives the advice as measured (say 30 epochs); a field the user set (``--epochs 2``)
    is kept, so this line says that 2 run, not 30.
    """
    yours = [
        f"{name} {getattr(applied, name)!r} (yours; advised {getattr(advice, name)!r})"
        for name in ADVISED_SETTINGS
        if getattr(applied, name) != getattr(advice, name)
    ]
    head = f"strategy auto: training {applied.strategy}" + (f" --freeze {applied.freeze}" if applied.freeze else "")
    return head + (" with " + ", ".join(yours) if yours else " as advised")
