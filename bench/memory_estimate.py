"""The memory estimate that refuses oversized runs, against the peak resident growth of a real training step.

Each case runs in its own process (its peak RSS is its own): one AdamW step of batch B at P px, channels-last,
from random weights. Prints the estimate, the measured growth and their ratio.

    python bench/memory_estimate.py                       # the default cases
    python bench/memory_estimate.py efficientnet_lite0:224:32
"""

from __future__ import annotations

import subprocess
import sys

_CASES = ["tiny_effnet:128:16", "tiny_resnet:128:16", "efficientnet_lite0:128:16", "efficientnet_lite0:224:16"]

_CHILD = """
import resource, sys, torch
from transferkit.models import build_model
from transferkit.train.memory import estimate_memory
torch.set_num_threads(2)
name, px, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = build_model(name, 10, pretrained=False).model.to(memory_format=torch.channels_last)
estimate = estimate_memory(model, px, batch, trains_backbone=True)
optimizer = torch.optim.AdamW(model.parameters())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
x = torch.randn(batch, 3, px, px).contiguous(memory_format=torch.channels_last)
model(x).logsumexp(1).mean().backward()
optimizer.step()
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(f"{name:20s} {px:4d} px batch {batch:3d}: estimate {estimate.total / 1e6:7.0f} MB, "
      f"peak RSS growth {grown / 1e6:7.0f} MB, measured/estimate {grown / estimate.total:.2f}")
"""


def main(cases: list[str]) -> None:
    for case in cases:
        name, px, batch = case.split(":")
        subprocess.run([sys.executable, "-c", _CHILD, name, px, batch], check=True)


if __name__ == "__main__":
    main(sys.argv[1:] or _CASES)
