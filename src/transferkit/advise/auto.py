"""``strategy: auto``: advise on the training data, then train with the plan; the run saves the advice."""

from __future__ import annotations

import json
from pathlib import Path

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageSource

__all__ = ["ADVICE_FILE", "resolve_auto"]

ADVICE_FILE = "advice.json"


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
    return advice.apply(config)
