"""Typed training configuration; YAML is its serialisation."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path

import yaml

from transferkit.strategies import DEFAULT_STRATEGY, get_strategy, strategy_names

__all__ = [
    "AUGMENTATIONS",
    "AUGMENT_POLICIES",
    "AUTO_LR",
    "BN_STATS",
    "CLASS_WEIGHTS",
    "LARGE_DATA",
    "MAX_IMAGE_SIZE",
    "OPTIMIZERS",
    "PRECISIONS",
    "RECIPES",
    "SAMPLERS",
    "SELECT_BY",
    "TTA",
    "ConfigError",
    "TrainConfig",
    "field_help",
    "parse_duration",
]

OPTIMIZERS = ("adamw", "sgd")
MAX_IMAGE_SIZE = 2048
"""The largest --image-size: 4x what pretrained backbones are trained at; a run above it is surely a typo."""
HEAD_SOLVERS = ("lbfgs", "minibatch")
ENGINES = ("torch", "onnxruntime", "mnn", "auto")
CACHE_VERIFY = ("stat", "hash")
PRECISIONS = ("fp32", "bf16", "fp16")
BN_STATS = ("frozen", "update")
AUGMENTATIONS = ("resized-crop", "pad-crop")
AUGMENT_POLICIES = ("none", "trivial", "randaugment")
"""`augment_policy` values, as `data.preprocessing` has them (kept here too: reading a config imports no torch)."""
TTA = ("none", "flip")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLERS = ("shuffle", "balanced")
SELECT_BY = ("accuracy", "balanced-accuracy", "macro-f1", "loss")
# Base learning rate of pretrained layers; the new head gets `head_lr_mult` times this and a scratch
# run `scratch_lr_mult` times this everywhere (pretrained layers need ~10x smaller steps).
DEFAULT_LR = {"adamw": 1e-4, "sgd": 5e-3}
AUTO_LR = "auto"
"""`TrainConfig.lr` value that asks for the learning-rate range test's suggestion."""
# Training images from which `recipe: auto` fine-tunes with the large-data recipe.
LARGE_DATA = 10_000
RECIPES = {
    # Few images: small batches give more steps; resized crops add the most variety.
    "small": {"batch_size": 32, "label_smoothing": 0.0, "augmentation": "resized-crop"},
    # Many images (measured on the full Fashion-MNIST, see BENCHMARKS.md): larger batches run faster per image
    # on a CPU, tensor-level pad-crop needs no per-image decoding, label smoothing 0.1.
    "large": {"batch_size": 128, "label_smoothing": 0.1, "augmentation": "pad-crop"},
}
"""Values of the fields a recipe decides (those left None in the config)."""


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``55m``, ``1.5h`` or a plain number of seconds.

    Example:
        >>> parse_duration("55m"), parse_duration("1.5h"), parse_duration("90")
        (3300.0, 5400.0, 90.0)
    """
    value = str(text).strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(value[-1:])
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        raise ConfigError(f"time_budget {text!r}: give a duration such as 900s, 55m or 1.5h") from None
    if seconds <= 0:
        raise ConfigError(f"time_budget {text!r} must be positive")
    return seconds


class ConfigError(ValueError):
    """An invalid configuration value."""


@dataclass
class TrainConfig:
    """Everything that decides a training run. Saved as `config.yaml` in the run directory.

    Example:
        >>> cfg = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=2)
        >>> cfg.resolved_lr()
        0.0001
    """

    # --- model and strategy ---
    backbone: str = "efficientnet_lite0"
    """Registered backbone (see `transferkit backbones`) or ``timm:<architecture>``."""
    strategy: str = DEFAULT_STRATEGY
    """A registered strategy (see `transferkit.strategies`), or auto: measure the data and train the advised plan."""
    weights: str | None = None
    """Backbone weights file (.pth/.pt/.safetensors) to load instead of the registered source."""
    freeze: int | None = None
    """partial: freeze the first K stages (see `transferkit backbones --detail`)."""
    freeze_modules: str | None = None
    """Comma-separated module-name patterns to freeze, e.g. ``conv_stem,bn1,blocks.0*``."""
    # --- optimisation ---
    epochs: int = 10
    """Training epochs (for lp-ft: both phases together)."""
    lp_epochs: int | None = None
    """lp-ft: epochs of the linear-probe phase; default a third of `epochs` (at least 1)."""
    batch_size: int | None = None
    """Images per optimisation step; default from the recipe (32 small, 128 large)."""
    optimizer: str = "adamw"
    """adamw or sgd (momentum 0.9, nesterov)."""
    lr: float | None = None
    """Learning rate of pretrained layers; default 1e-4 (AdamW) or 5e-3 (SGD). The new head gets x head_lr_mult.
    auto: run the learning-rate range test first (as `transferkit lr-find`) and train at its suggestion."""
    lr_find_steps: int = 100
    """lr-find and lr auto: at most this many steps of the range test (on small data about 3 epochs, at least 30)."""
    head_lr_mult: float = 10.0
    """The new head learns this many times faster than pretrained layers (not in lp-ft's fine-tune phase, whose
    head the probe has trained already)."""
    scratch_lr_mult: float = 10.0
    """A from-scratch run uses this multiple of `lr` for every layer."""
    weight_decay: float = 0.01
    """Decoupled weight decay; never applied to norms and biases."""
    layer_decay: float = 1.0
    """Layer-wise learning-rate decay below 1: the backbone's last stage learns at lr x layer_decay, each stage before
    it layer_decay times slower again, down to the stem (timm's --layer-decay); the head keeps lr x head_lr_mult."""
    ema: float = 0.0
    """Fine-tuning: keep an exponential moving average of the weights with this decay per step (e.g. 0.99; its
    warm-up is min(ema, (1 + t) / (10 + t)) after t steps); validation, the best checkpoint and everything scored
    from the run use the average. 0: no average."""
    l2_sp: float = 0.0
    """Fine-tuning: pull the pretrained layers' weights toward their starting values (L2-SP, decoupled: after each
    step w -= lr x l2_sp x (w - w0)) instead of decaying them toward zero. 0: plain weight decay."""
    warmup_epochs: float = 1.0
    """Linear warm-up before the cosine decay."""
    label_smoothing: float | None = None
    """Cross-entropy label smoothing; default from the recipe (0 small, 0.1 large)."""
    class_weights: str = "none"
    """none, or balanced: each class's cross-entropy weighted by n_images / (n_classes x its images), so a rare
    class counts as much as a common one (scikit-learn's class_weight='balanced'); validation loss stays unweighted."""
    sampler: str = "shuffle"
    """shuffle (every image once per epoch) or balanced: each epoch draws as many images with replacement, every
    class equally often (seeded by seed and epoch, so a resumed run continues the same sequence)."""
    select_by: str = "accuracy"
    """Validation figure that picks the best checkpoint and drives early stopping: accuracy, balanced-accuracy (mean
    per-class recall), macro-f1, or loss (the lowest cross-entropy: with a few validation images per class it moves
    with every image's confidence, where accuracy moves in steps of one image)."""
    bn_stats: str = "frozen"
    """Fine-tuning from pretrained weights: keep BatchNorm's pretrained running statistics (frozen) or re-estimate
    them from the training batches (update). scratch always updates them. Frozen measured 5-7 points better on
    Fashion-MNIST with 100 images per class (full 82.6% vs 77.4%, lp-ft 81.7% vs 74.7%)."""
    # --- data and augmentation ---
    image_size: int | None = None
    """Input size in pixels (16 to 2048); default: the backbone's size, or ~3.5x the side of small source images. A run
    whose training step cannot fit in the memory available is refused before it starts, with the estimate."""
    crop_pct: float = 1.0
    """Evaluation crop: resize the short side to size/crop_pct, then centre-crop (1.0 keeps the whole image)."""
    augment: bool = True
    """Augment the training images (see `augmentation`)."""
    augmentation: str | None = None
    """resized-crop (`crop_scale`-100% of the area, flip) or pad-crop (black border of 1/8 the side, random crop, flip);
    default from the recipe (resized-crop small, pad-crop large)."""
    crop_scale: float = 0.8
    """resized-crop: the smallest fraction of the image's area a training crop keeps (1: the whole image, resized).
    0.8 measured better than 0.5 for lp-ft in 9 of 12 small-data cells and for full in 10 of 12 (BENCHMARKS.md,
    "Small-data recipe, one idea at a time"); runs saved before it trained with 0.5."""
    flip: bool = True
    """Augmentation flips half the training images left-right; --no-flip where a mirror changes the label (digits,
    text). Also the flips of `probe_views`."""
    augment_policy: str = "none"
    """After the crop and flip: none, trivial (torchvision's TrivialAugmentWide) or randaugment (RandAugment, 2
    operations at magnitude 9). Per image, so array-backed data takes the per-image path when it is set."""
    mixup: float = 0.0
    """Fine-tuning: MixUp of each training batch, images and labels blended by a weight drawn from Beta(mixup, mixup)
    (0.2 is the usual choice); 0: off. With `cutmix` too, each batch gets one of the two at random."""
    cutmix: float = 0.0
    """Fine-tuning: CutMix of each training batch, a box of one image pasted into another and the labels mixed by its
    area, the area drawn from Beta(cutmix, cutmix) (1.0 is the usual choice); 0: off."""
    random_erase: float = 0.0
    """Fraction of training images with a random rectangle blanked (pad-crop on array-backed data only)."""
    tta: str = "none"
    """Test-time augmentation when a trained run is scored (the test set, `evaluate`, `predict`, `compare`): none, or
    flip: each image's class probabilities averaged with its left-right mirror's (twice the evaluation time; only
    for data whose label a mirror keeps). Validation during training, which picks the best epoch, stays plain."""
    # --- run ---
    recipe: str = "auto"
    """Defaults for the fields left unset: small, large, or auto (large from 10,000 training images on when
    fine-tuning, small otherwise). See `RECIPES`."""
    time_budget: str | None = None
    """Plan the epochs to fit this wall time (e.g. 55m, 1h, 900s) after timing a few steps; stop at epoch ends
    when the next epoch would not fit. The best checkpoint is kept either way."""
    race: bool = True
    """strategy auto: race short trials of the candidate strategies and the classical baseline on the validation split
    (successive halving, within 40% of `time_budget` when one is set) and train the winner; --no-race trains the
    advisor's rule-based plan without measuring."""
    val_fraction: float = 0.2
    """Stratified validation split taken from the training data when no validation set is given."""
    seed: int = 0
    """Seed for splits, initialisation and data order."""
    patience: int | None = None
    """Early stopping: stop after this many epochs without a better validation accuracy."""
    log: str | None = None
    """Also log to tensorboard (RUN/tensorboard event files), mlflow ($MLFLOW_TRACKING_URI, else ./mlruns), or both
    (comma-separated); optional extras: pip install 'transferkit[tracking]'. metrics.jsonl stays the record."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda[:N]."""
    # --- speed ---
    workers: int = 0
    """DataLoader worker processes (per process under torchrun)."""
    threads: int | None = None
    """CPU threads for torch and the feature engines; default torch's (one per core). Fewer can be faster when other
    work keeps the cores busy (BENCHMARKS.md, "Threads")."""
    precision: str = "fp32"
    """fp32, bf16 or fp16 (autocast, fp16 with a gradient scaler); CUDA only, CPU runs stay in fp32."""
    channels_last: bool = True
    """Images and convolution weights in channels-last memory format: faster convolutions on CUDA, and on the CPU
    (EfficientNet-Lite0 training steps at 48 px measured 1.5x faster)."""
    compile: bool = False
    """Compile the training model with torch.compile (first steps are slow while it compiles)."""
    fast_depthwise: bool = True
    """On the CPU: depthwise convolutions' weight gradients by the faster of PyTorch's kernel and a sum over kernel
    taps (EfficientNet-Lite0 training measured 1.6x faster at 48 px, 2.7x at 32). Each shape is timed once per machine
    (kept in the cache folder) and the run records its choices, so the same seed gives the same weights."""
    fold_bn: bool = True
    """While BatchNorm normalises with its running statistics (pretrained runs, frozen layers, evaluation), compute it
    inside the convolution before it (weights scaled per channel, a bias added): one pass less over each activation
    forward and backward. Same parameters train; results differ from the unfolded model by float rounding only."""
    sync_bn: bool = True
    """Under torchrun: BatchNorm statistics over the global batch, not each process's slice."""
    head_init: str = "xavier"
    """xavier or trunc-normal."""
    feature_cache: bool = True
    """linear-probe and lp-ft's probe: extract frozen features once (cached on disk) and train the head on them."""
    head_solver: str = "lbfgs"
    """Head on cached features: lbfgs (full batch, standardised features, L2 `head_l2`) or minibatch (the optimiser)."""
    head_l2: float = 0.1
    """lbfgs: L2 penalty on the head's weights (standardised features); 0.1 measured best on Fashion-MNIST."""
    probe_views: int = 2
    """linear-probe and lp-ft's probe with the lbfgs head: also fit the head on this many augmented passes over the
    training images (crops and flips drawn as in training, under `seed`; extracted every run, not cached), so that
    lp-ft's fine-tune phase starts from a head that already fits augmented inputs. 0: the clean features only, as
    before 2 was measured better (BENCHMARKS.md, "A probe fitted on augmented views"). Needs `augment`."""
    engine: str = "auto"
    """Frozen feature extraction: torch, onnxruntime, mnn, or auto: the fastest installed engine that matches torch
    (parity-checked once per backbone weights and image size, the choice kept in the cache), torch when neither
    onnxruntime nor MNN is installed."""
    cache_dir: str | None = None
    """Cache of features and decoded images; default $TRANSFERKIT_CACHE or ~/.cache/transferkit."""
    cache_verify: str = "stat"
    """How cached features and decoded images are checked against their image files: stat (each file's path, size
    and modification time: cheap, but a file rewritten with its size and time kept goes unnoticed) or hash (each
    file's contents, read on every lookup)."""
    prefix_cache: bool = True
    """partial without augmentation: run the frozen first layers once and train the rest on their output, kept in
    memory (when the model splits cleanly and the activations fit in `prefix_cache_mb`)."""
    prefix_cache_mb: float = 2048
    """Memory the prefix cache may take, training and validation activations together."""
    decode_cache: bool = True
    """Decode and resize each image once per run into a memory-mapped array instead of every epoch."""
    # --- safety ---
    allow_partial_weights: bool = False
    """Accept a checkpoint that covers too little of the backbone."""
    allow_unsafe_pickle: bool = False
    """Read pickled weight files with full unpickling (only for files you trust)."""
    allow_data_change: bool = False
    """Resume a run although its training or validation images differ from the interrupted run's (same classes):
    the sample order cannot continue and `best` so far was picked on the old validation set."""
    max_bad_fraction: float = 0.05
    """Unreadable images are skipped; above this fraction of the data the run stops instead."""
    max_bad_steps: int = 5
    """Steps with a non-finite loss or gradient are skipped; this many in a row stop the run."""
    checkpoint_every_steps: int = 50
    """Also save the resumable state every this many steps within an epoch (0: at epoch ends only)."""

    def __post_init__(self) -> None:
        from transferkit._field_types import FieldTypeError, checked_value

        for f in fields(self):  # first the types: `epochs: true` must not pass as 1, nor `ten` reach a comparison
            if f.name == "lr" and self.lr == AUTO_LR:
                continue  # the one word the number field takes: the range test decides it (`train.lr_find`)
            try:
                setattr(self, f.name, checked_value(f.name, f.type, getattr(self, f.name)))
            except FieldTypeError as exc:
                raise ConfigError(str(exc)) from None
        if self.strategy not in strategy_names() and self.strategy != "auto":
            raise ConfigError(f"strategy {self.strategy!r}: choose auto or one of {', '.join(strategy_names())}")
        if self.bn_stats not in BN_STATS:
            raise ConfigError(f"bn_stats {self.bn_stats!r}: choose one of {', '.join(BN_STATS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.head_solver not in HEAD_SOLVERS:
            raise ConfigError(f"head_solver {self.head_solver!r}: choose one of {', '.join(HEAD_SOLVERS)}")
        if self.cache_verify not in CACHE_VERIFY:
            raise ConfigError(f"cache_verify {self.cache_verify!r}: choose one of {', '.join(CACHE_VERIFY)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS:
            raise ConfigError(f"augmentation {self.augmentation!r}: choose one of {', '.join(AUGMENTATIONS)}")
        for name, allowed in (
            ("class_weights", CLASS_WEIGHTS), ("sampler", SAMPLERS), ("select_by", SELECT_BY), ("tta", TTA),
            ("augment_policy", AUGMENT_POLICIES),
        ):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.log is not None:
            from transferkit.tracking import TrackingError, parse_log

            try:
                parse_log(self.log)
            except TrackingError as exc:
                raise ConfigError(str(exc)) from None
        if self.recipe not in ("auto", *RECIPES):
            raise ConfigError(f"recipe {self.recipe!r}: choose auto or one of {', '.join(RECIPES)}")
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device {self.device!r}: choose auto, cpu, cuda, cuda:N or mps")
        if self.strategy != "auto":
            try:
                get_strategy(self.strategy).check(self)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size is None or self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr is None or self.lr == AUTO_LR or self.lr > 0, "lr must be positive (or auto)"),
            (self.lr_find_steps >= 3, "lr_find_steps must be at least 3"),
            (self.head_lr_mult > 0 and self.scratch_lr_mult > 0, "learning-rate multipliers must be positive"),
            (0 < self.val_fraction < 1, "val_fraction must be between 0 and 1"),
            (self.head_l2 >= 0, "head_l2 must be 0 or more"),
            (self.probe_views >= 0, "probe_views must be 0 or more"),
            (self.label_smoothing is None or 0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.random_erase <= 1, "random_erase must be in [0, 1]"),
            (0 < self.crop_scale <= 1, "crop_scale must be in (0, 1]"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup and cutmix must be 0 or more"),
            (self.prefix_cache_mb >= 0, "prefix_cache_mb must be 0 or more"),
            (0 < self.crop_pct <= 1, "crop_pct must be in (0, 1]"),
            (
                self.image_size is None or 16 <= self.image_size <= MAX_IMAGE_SIZE,
                f"image_size must be between 16 and {MAX_IMAGE_SIZE} pixels (got {self.image_size}): pretrained "
                "backbones are trained at 224 to 600, and a training step at 4096 px takes tens of GB per image",
            ),
            (self.lp_epochs is None or 1 <= self.lp_epochs < self.epochs, "lp_epochs must be in [1, epochs)"),
            (0 <= self.max_bad_fraction <= 1, "max_bad_fraction must be in [0, 1]"),
            (self.max_bad_steps >= 1, "max_bad_steps must be at least 1"),
            (self.checkpoint_every_steps >= 0, "checkpoint_every_steps must be 0 or more"),
            (self.workers >= 0, "workers must be 0 or more"),
            (self.threads is None or self.threads >= 1, "threads must be at least 1"),
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be in [0, epochs]"),
            (0 < self.layer_decay <= 1, "layer_decay must be in (0, 1]"),
            (0 <= self.ema < 1, "ema must be in [0, 1)"),
            (self.l2_sp >= 0, "l2_sp must be 0 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def with_recipe(self, n_train: int) -> TrainConfig:
        """A copy with every field the recipe decides filled in, for `n_train` training images."""
        name = self.recipe
        if name == "auto":
            fine_tuning = self.strategy != "auto" and get_strategy(self.strategy).fine_tunes
            name = "large" if fine_tuning and n_train >= LARGE_DATA else "small"
        values = {k: v for k, v in RECIPES[name].items() if getattr(self, k) is None}
        return replace(self, **values) if values else self

    def augment_options(self) -> dict:
        """The training transform's settings (`data.build_transforms`'s keywords) once the recipe is applied."""
        return {
            "augmentation": self.augmentation or "resized-crop",
            "crop_scale": self.crop_scale,
            "flip": self.flip,
            "policy": self.augment_policy,
        }

    def resolved_lr(self) -> float:
        if self.lr == AUTO_LR:
            raise ConfigError("lr auto is decided by the range test before training (train_run runs it first)")
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def resolved_lp_epochs(self) -> int:
        return self.lp_epochs if self.lp_epochs is not None else max(1, self.epochs // 3)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, *, saved_run: bool = False) -> TrainConfig:
        """Read a YAML mapping of fields; every error names the file (and the line of a YAML syntax error).

        With `saved_run` (a run's own config.yaml, read to resume it), a field the file lacks because the run was
        saved before the field existed takes the value the run trained with (`DEFAULTS_BEFORE`), not today's
        default, so the resumed run continues as it began.
        """
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read ({exc})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        if saved_run:
            data = {**DEFAULTS_BEFORE, **data}
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


DEFAULTS_BEFORE = {"probe_views": 0, "fold_bn": False, "crop_scale": 0.5}
"""Fields added with a default that trains differently, and the value every run saved before them trained with."""


@cache
def field_help(cls: type = TrainConfig) -> dict[str, str]:
    """Each field's docstring (the string literal after it in the class body), whitespace collapsed.

    The docstrings are the one place a field is documented: the CLI's option help is read from here.

    Example:
        >>> field_help()["seed"]
        'Seed for splits, initialisation and data order.'
    """
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and documented:
            docs[node.target.id] = re.sub(r"\s+", " ", str(after.value.value)).strip()
    return docs
