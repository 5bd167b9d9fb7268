"""``defectlens train``: every TrainConfig setting is a flag; a recipe, then the flags, make the config.

The flags are generated from :class:`~defectlens.training.config.TrainConfig`: its docstring gives
the help, its defaults the shown defaults, :data:`~defectlens.training.config.CHOICES` the choices,
so the command line and the library cannot drift apart. ``--data`` takes a dataset folder or a plain
folder of images (imported and split in one step).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re

from defectlens.training.config import CHOICES, TrainConfig

#: Flags the trainer takes besides the config fields (the config field ``evaluate`` is --evaluate/--no-evaluate).
_EXTRA = {"config", "resume", "list_models", "list_recipes", "force_split"}


def config_help() -> dict[str, str]:
    """``{field: help}`` from the Attributes section of TrainConfig's docstring (one sentence each)."""
    doc = inspect.getdoc(TrainConfig) or ""
    section = doc.split("Attributes:", 1)[1]
    out: dict[str, str] = {}
    for name, text in re.findall(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", section, flags=re.M | re.S):
        out[name] = " ".join(text.split()).replace("``", "")
    return out


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, default None (unset flags leave the recipe's value)."""
    helps = config_help()
    group = parser.add_argument_group("training settings (override the recipe; defaults in brackets)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{helps.get(f.name, '')} [{default}]"
        if str(f.type) == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        kind = {"int": int, "int | None": int, "float": float}.get(str(f.type), str)
        metavar = {"data": "DIR", "out": "DIR", "model": "NAME", "name": "NAME"}.get(f.name)
        group.add_argument(flag, type=kind, default=None, choices=CHOICES.get(f.name), metavar=metavar, help=help_text)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier (on a dataset folder, or a folder of class subfolders in one step)",
        description="Train, then evaluate the best epoch on val and test. --data takes a dataset folder "
        "(from 'defectlens data import') or any folder of images in class subfolders, imported and split here.",
    )
    p.add_argument("--config", metavar="RECIPE", help="a shipped recipe name (see --list-recipes) or a YAML path")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run folder from its last.pt")
    p.add_argument("--force-split", action="store_true", help="re-import a plain --data folder even if done before")
    p.add_argument("--list-models", action="store_true", help="list the backbones and exit")
    p.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    add_config_flags(p)
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display, stderr, stdout, warnings_as_lines
    from defectlens.cli.summary import print_run
    from defectlens.training import config_from_run
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.recipes import list_recipes, load_recipe
    from defectlens.workflows.train import train_and_evaluate

    if args.list_models or args.list_recipes:
        from defectlens.models import list_models

        print("\n".join(list_models() if args.list_models else list_recipes()))
        return 0
    base = config_from_run(args.resume) if args.resume else load_recipe(args.config) if args.config else TrainConfig()
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and k not in _EXTRA}
    config = base.replace(**overrides)
    with warnings_as_lines(), progress_display() as progress:
        if not args.resume:
            prepared = prepare_training_data(
                config.data, out=config.out, force=args.force_split, progress=progress,
                task=config.task, normal=config.normal, channels=config.channels,
            )  # fmt: skip
            for line in prepared.messages:
                stderr().print(line)
            config = config.replace(data=str(prepared.folder))
        result = train_and_evaluate(config, resume=args.resume, progress=progress)
    if result.run_dir is not None:
        print_run(stdout(), result)
    return 0
