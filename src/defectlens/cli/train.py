"""``defectlens train``: parse options, resolve the config (recipe, then options), run the workflow."""

from __future__ import annotations

import argparse

from defectlens.training.config import AUGMENT_LEVELS, BALANCE_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a classifier on an imported dataset")
    p.add_argument("--data", help="dataset folder (from 'defectlens data import')")
    p.add_argument("--model", help="backbone name (see 'defectlens train --list-models')")
    p.add_argument("--config", help="recipe name (casting, elpv, neu-6, neu-binary) or YAML path; options override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--input-size", type=int)
    p.add_argument("--channels", type=int, choices=(1, 3))
    p.add_argument("--freeze-backbone", action="store_true", default=None, help="train only the head")
    p.add_argument("--augment", choices=AUGMENT_LEVELS)
    p.add_argument("--balance", choices=BALANCE_MODES)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", help="parent folder of run folders (default runs/)")
    p.add_argument("--name", help="run name")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run folder from its last.pt")
    p.add_argument("--threshold-method", choices=("f1", "recall", "cost"))
    p.add_argument(
        "--tta",
        choices=("none", "flips", "dihedral"),
        help="test-time augmentation built into the model: average logits over 4 flips or all 8 flips/rotations",
    )
    p.add_argument("--no-eval", dest="evaluate", action="store_false", default=None, help="skip final evaluation")
    p.add_argument("--list-models", action="store_true", help="list backbones and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display, stdout
    from defectlens.cli.summary import print_run
    from defectlens.training import config_from_run
    from defectlens.training.config import TrainConfig
    from defectlens.workflows.recipes import load_recipe
    from defectlens.workflows.train import train_and_evaluate

    if args.list_models:
        from defectlens.models import list_models

        print("\n".join(list_models()))
        return 0
    if args.resume:
        base = config_from_run(args.resume)
    elif args.config:
        base = load_recipe(args.config)
    else:
        base = TrainConfig()
    overrides = {k: getattr(args, k) for k in vars(args) if k in TrainConfig.__dataclass_fields__}
    config = base.replace(**overrides)
    with progress_display() as progress:
        result = train_and_evaluate(config, resume=args.resume, progress=progress)
    if result.run_dir is not None:
        print_run(stdout(), result)
    return 0
