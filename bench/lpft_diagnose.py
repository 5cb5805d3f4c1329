"""Why does lp-ft's first fine-tuning epoch undo its probe? Measure the probed head before any step.

The probe's head is fitted on features of *un-augmented* images (the feature cache). The fine-tune phase then
feeds it *augmented* images. This script fits the head the way the probe does (L-BFGS on standardised
features, L2 `head_l2`) and scores it, frozen backbone in eval mode, on

- the clean training images it was fitted on,
- the same images under the training augmentation (random resized crop 50-100 %, flip), one pass,
- the validation images,

and reports the logit scale (mean max-logit) and the cross-entropy the first fine-tuning steps would see,
for several L2 strengths and for a head fitted on augmented copies instead.

    python bench/lpft_diagnose.py --fmnist /usr/share/datasets/fashion-mnist --per-class 100 --px 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from transferkit.data import ImageDataset, fashion_mnist, per_class_subset
from transferkit.models import build_model, get_backbone, preprocessing_config
from transferkit.train.linear_head import LbfgsHead


@torch.no_grad()
def features(model, source, transform, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    loader = DataLoader(ImageDataset(source, transform), batch_size=batch, shuffle=False)
    feats, labels = [], []
    for x, y in loader:
        feats.append(model.forward_head(model.forward_features(x), pre_logits=True))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def score(weight, bias, feats, labels) -> tuple[float, float, float]:
    logits = feats @ weight.T + bias
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return loss, acc, logits.max(1).values.mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    pool = fashion_mnist(args.fmnist, "train")
    chosen = per_class_subset(pool.labels, args.per_class + 20, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    train_idx, val_idx = [], []
    for cls in range(len(pool.classes)):
        idx = rng.permutation(chosen[pool.labels[chosen] == cls])
        val_idx += list(idx[:20])
        train_idx += list(idx[20:])
    train, val = pool.subset(np.array(train_idx)), pool.subset(np.array(val_idx))

    built = build_model("efficientnet_lite0", len(pool.classes))
    model = built.model.eval()
    pre = preprocessing_config(model, get_backbone("efficientnet_lite0"), args.px, crop_pct=1.0)
    began = time.perf_counter()
    clean, y = features(model, train, pre.eval_transform())
    aug, y_aug = features(model, train, pre.train_transform("resized-crop"))
    aug2, _ = features(model, train, pre.train_transform("resized-crop"))
    vfeat, vy = features(model, val, pre.eval_transform())
    print(f"features: {len(y)} train (clean + 2 augmented passes), {len(vy)} val, {time.perf_counter() - began:.0f} s")
    drift = (aug - clean).norm(dim=1).mean() / clean.norm(dim=1).mean()
    print(f"augmentation moves a feature vector by {100 * drift:.0f}% of its norm on average")

    print(
        "\n| head fitted on | head_l2 | |W| | train clean loss / acc | train augmented loss / acc | val loss / acc |"
        " mean max-logit (aug) |"
    )
    print("|---|---|---|---|---|---|---|")
    for fitted_on, fx, fy in (("clean", clean, y), ("augmented", aug2, y_aug)):
        for l2 in (0.01, 0.1, 1.0, 10.0):
            head = LbfgsHead(fx, fy, len(pool.classes), l2=l2)
            head.run(100)
            w, b = head.folded()
            tc, ta, tv = score(w, b, clean, y), score(w, b, aug, y_aug), score(w, b, vfeat, vy)
            print(
                f"| {fitted_on} | {l2:g} | {w.norm():.1f} | {tc[0]:.3f} / {100 * tc[1]:.1f}% | "
                f"{ta[0]:.3f} / {100 * ta[1]:.1f}% | {tv[0]:.3f} / {100 * tv[1]:.1f}% | {ta[2]:.1f} |"
            )


if __name__ == "__main__":
    main()
