"""The Python entry point: `Finetuner`, calling the same library functions as the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.markup import escape

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import DataError, ImageSource, from_folder
from transferkit.evaluate import ClassificationMetrics, evaluate_run, predict_images
from transferkit.tracking import Loggers, open_loggers
from transferkit.tracking.run_files import finish_run
from transferkit.train.distributed import init_distributed
from transferkit.train.rundir import RunDir, new_run_dir, remove_unstarted
from transferkit.train.runner import RunResult, train_run

__all__ = ["Finetuner"]


class Finetuner:
    """Fine-tune a pretrained backbone on a labelled image dataset.

    Example:
        >>> tuner = Finetuner.from_folder("data/pets", backbone="efficientnet_lite0", strategy="full")
        >>> result = tuner.fit(out="runs")                      # doctest: +SKIP
        >>> tuner.predict(["cat.jpg"], top_k=3)                # doctest: +SKIP

    Args:
        train: Training images.
        val: Validation images; default a stratified split of `train` (`config.val_fraction`).
        test: Test images, evaluated once with the best checkpoint after training.
        config: The training configuration; keyword arguments override its fields.
    """

    def __init__(
        self,
        train: ImageSource,
        *,
        val: ImageSource | None = None,
        test: ImageSource | None = None,
        config: TrainConfig | None = None,
        **overrides,
    ) -> None:
        config = config or TrainConfig()
        self.config = replace(config, **overrides) if overrides else config
        self.train, self.val, self.test = train, val, test
        self.result: RunResult | None = None
        self.test_metrics: ClassificationMetrics | None = None

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, val: str | Path | None = None, test: str | Path | None = None, **config
    ) -> Finetuner:
        """Images in `folder/<class>/...`; `val` and `test` are folders with the same class folders."""
        return cls(
            from_folder(folder),
            val=from_folder(val) if val else None,
            test=from_folder(test) if test else None,
            config=TrainConfig(**config),
        )

    def fit(
        self,
        out: str | Path = "runs",
        name: str | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> RunResult:
        """Train; writes a new run directory under `out` (or into `run_dir`) and returns the result.

        With `resume`, continue the interrupted run in `run_dir` exactly where its last checkpoint left it.
        Launched by ``torchrun``, every process trains its share and rank 0 alone writes the run directory
        and evaluates the test set.
        """
        dist = init_distributed(self.config.device)
        # The test set is read before training: an unreadable test image is found now, not after an hour.
        test, test_skipped = self._screened_test() if self.test is not None and dist.is_main else (self.test, 0)
        path = Path(run_dir) if run_dir else None
        created = path is None
        if path is None and dist.is_main:
            path = new_run_dir(out, name or _default_name(self.train, self.config))
        path = dist.broadcast(path)  # one numbered directory, chosen by rank 0
        try:
            config, reused = self.config, None
            if config.strategy == "auto":  # measure (and race) first, then train the chosen plan (advice.json)
                from transferkit.advise.auto import resolve_auto, reused_run

                if dist.enabled and config.race:  # every process would race on its own: take the rule-based plan
                    console.print(
                        "[yellow]warning:[/yellow] strategy auto does not race under torchrun; training the advisor's "
                        "rule-based plan (race in one process first, then train its winner with torchrun)"
                    )
                    config = replace(config, race=False)

                config = resolve_auto(config, self.train, path, val=self.val, resume=resume)
                reused = reused_run(path)  # the race's winning trial was this very run: nothing to train again
            loggers = open_loggers(config.log, path, config.to_dict()) if dist.is_main else Loggers([])
            self.result = reused or train_run(
                config, self.train, self.val, run_dir=path, resume=resume, listeners=[loggers.log_epoch]
            )
        except BaseException:
            # A start that failed in its setup leaves no folder for `--resume auto` to mistake for the newest run.
            if created and dist.is_main:
                remove_unstarted(path)
            raise
        if dist.is_main:
            from transferkit.report.plots import plot_run_lr_find

            plot_run_lr_find(path)  # the range test's curve, when --lr auto ran one
        if test is not None and dist.is_main:
            self.test_metrics, _ = evaluate_run(path, test, out_dir=path / "test", split="test")
            RunDir(path).update_summary(test_acc=self.test_metrics.accuracy, test_skipped_images=test_skipped)
            skipped = f" ({test_skipped} unreadable skipped)" if test_skipped else ""
            console.print(
                f"test accuracy {100 * self.test_metrics.accuracy:.2f}% on {self.test_metrics.n} images{skipped}"
            )
        if loggers:
            figures = {"best_val_acc": self.result.best_val_acc}
            if self.test_metrics is not None:
                m = self.test_metrics
                figures |= {
                    "test_acc": m.accuracy,
                    "test_balanced_acc": m.balanced_accuracy,
                    "test_macro_f1": m.macro_f1,
                }
            finish_run(loggers, path, figures, path / "test" / "confusion.png" if self.test_metrics else None)
        return self.result

    def _screened_test(self) -> tuple[ImageSource, int]:
        """The readable test images (the others named and skipped, as training does) and how many were skipped."""
        from transferkit.data.check import screen

        unknown = [c for c in self.test.classes if c not in self.train.classes]
        if unknown:
            raise ValueError(f"the test data has classes the training data lacks: {', '.join(unknown)}")
        test, report = screen(self.test, "test")
        for path, reason in report.bad_images:
            console.print(f"[yellow]warning:[/yellow] test: skipping {escape(path)}: {escape(reason)}", highlight=False)
        if len(test) == 0:
            raise DataError(f"test data {self.test.name}: none of its {len(self.test)} images can be read")
        return test, len(report.bad_images)

    @property
    def run_dir(self) -> Path:
        if self.result is None:
            raise RuntimeError("call fit() first")
        return self.result.run_dir

    def evaluate(self, source: ImageSource) -> ClassificationMetrics:
        """Accuracy, per-class figures and a confusion matrix of the best checkpoint on `source`."""
        metrics, _ = evaluate_run(self.run_dir, source)
        return metrics

    def predict(self, paths: list[str | Path], top_k: int = 3) -> list[dict]:
        return predict_images(self.run_dir, paths, top_k=top_k)


def _default_name(source: ImageSource, config: TrainConfig) -> str:
    return f"{source.short_name}-{config.strategy}"
