"""Training recipes: the YAML files shipped in ``defectlens/recipes`` and user YAML paths.

A recipe is any subset of :class:`~defectlens.training.config.TrainConfig` fields. ``--config``
takes a path (``my.yaml``, ``../recipes/casting.yaml``) or the name of a shipped recipe
(``casting``); the shipped ones travel inside the package, so they work from any folder.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from defectlens.core.errors import DefectlensError
from defectlens.training.config import TrainConfig

_PACKAGE = "defectlens.recipes"


def list_recipes() -> list[str]:
    """Names of the shipped recipes (``casting``, ``elpv``...)."""
    return sorted(p.name[:-5] for p in resources.files(_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """The YAML file of a shipped recipe name, or ``name_or_path`` itself when it is a file.

    Raises:
        DefectlensError: when it is neither, naming the shipped recipes and the closest match.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = list_recipes()
    if str(name_or_path) in shipped:
        return Path(str(resources.files(_PACKAGE).joinpath(f"{name_or_path}.yaml")))
    stem = path.name.removesuffix(path.suffix) if path.suffix in (".yaml", ".yml") else path.name
    close = [stem] if stem in shipped else difflib.get_close_matches(stem, shipped, n=1)
    hint = f"; the shipped recipe '{close[0]}' is --config {close[0]}" if close else ""
    raise DefectlensError(f"{name_or_path}: recipe file not found{hint} (shipped recipes: {', '.join(shipped)})")


def load_recipe(name_or_path: str | Path) -> TrainConfig:
    """A :class:`TrainConfig` from a recipe name or YAML path."""
    return TrainConfig.from_yaml(recipe_path(name_or_path))


#: Where ``benchmarks/run_real.py --seeds N`` records each shipped recipe's measured test-accuracy spread.
EXPECTED_FILE = "expected.json"


@dataclass(frozen=True)
class ExpectedRange:
    """A shipped recipe's test accuracy over training seeds on one CPU model (measured, not promised)."""

    cpu: str
    seeds: tuple[int, ...]
    mean: float
    sd: float
    low: float
    high: float


def expected_ranges(recipe: str) -> list[ExpectedRange]:
    """The measured seed spreads of a shipped recipe, one per CPU model (empty for an unmeasured recipe)."""
    source = resources.files(_PACKAGE).joinpath(EXPECTED_FILE)
    if not source.is_file():
        return []
    entries = json.loads(source.read_text(encoding="utf-8")).get(str(recipe), {})
    return [
        ExpectedRange(cpu, tuple(e["seeds"]), e["mean"], e["sd"], e["min"], e["max"])
        for cpu, e in sorted(entries.items())
    ]


def range_for_cpu(ranges: list[ExpectedRange], cpu: str) -> ExpectedRange | None:
    """The range measured on this exact CPU model, else on the same vendor's family, else None."""
    exact = [r for r in ranges if r.cpu == cpu]
    if exact:
        return exact[0]
    vendor = cpu.split()[0].lower() if cpu.split() else ""
    family = [r for r in ranges if vendor and r.cpu.lower().startswith(vendor)]
    return family[0] if family else None
