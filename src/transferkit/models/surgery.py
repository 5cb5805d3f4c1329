"""Head surgery: cut off the pretrained classifier and attach a new N-class head."""

from __future__ import annotations

from torch import nn

__all__ = ["HEAD_INITS", "head_keys", "init_head", "replace_head"]

HEAD_INITS = ("xavier", "trunc-normal")


def replace_head(model: nn.Module, num_classes: int, init: str = "xavier") -> nn.Module:
    """Give a timm model a fresh `num_classes` classifier, initialised with `init`.

    Xavier-uniform (the Gluon/D2L recipe) keeps the logits' scale independent of the feature width;
    truncated normal with std 0.02 is the ViT/timm convention. Biases start at zero.
    """
    model.reset_classifier(num_classes)
    init_head(model.get_classifier(), init)
    return model


def init_head(head: nn.Module, init: str = "xavier") -> None:
    if init not in HEAD_INITS:
        raise ValueError(f"unknown head init {init!r}; choose one of {', '.join(HEAD_INITS)}")
    for module in head.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            if init == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.trunc_normal_(module.weight, std=0.02, a=-2 * 0.02, b=2 * 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def head_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the model's classifier."""
    head = model.get_classifier()
    ids = {id(t) for t in list(head.parameters()) + list(head.buffers())}
    keys = [k for k, t in model.state_dict(keep_vars=True).items() if id(t) in ids]
    if not keys and not isinstance(head, nn.Identity):
        raise ValueError("could not locate the classifier's tensors")
    return keys
