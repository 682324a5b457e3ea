"""Write a trained model directory into a Triton model repository as a new version, and take
the newest version out again (rollback).

The version folder is assembled under a temporary name and renamed into place, so Triton's
repository poller never sees a half-written version (this is what makes hot swaps safe).
Rollback renames the newest version away the same way and keeps it under the run directory
(``retired_dir``). Version numbers only grow, retired ones included: Triton caches a model by
version number, so a number that once held other weights must never come back.

    python -m serving.online.export publish artifacts/syn [--repo model_repo]   # a new version
    python -m serving.online.export serves synthetic     # exit 0 when the newest version is of that catalogue
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import typer

from contract.settings import PROJECT_ROOT, Settings, get_settings
from serving.model.artifacts import load_config, trained_catalogue
from serving.model.precision import check_precision

BACKEND = Path(__file__).resolve().parent / "triton_backend.py"
# The config every new model folder starts from: the one in git (its folder keeps its name on disk;
# a model exported under another RECO_MODEL_NAME gets that name in its copy).
CONFIG_TEMPLATE = PROJECT_ROOT / "model_repo" / "session_transformer" / "config.pbtxt"
MODEL_NAME_LINE = re.compile(r'^name: "[^"]*"', re.MULTILINE)
ARTIFACTS = ("config.json", "weights.pt", "vocab.json")
KEEP_VERSIONS = 3


def versions(model_dir: Path) -> list[int]:
    if not model_dir.exists():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def retired_dir(model_name: str | None = None, settings: Settings | None = None) -> Path:
    """Where rollback keeps the versions it took out of the repository (model name: the setting's
    by default)."""
    settings = settings or get_settings()
    return settings.run_dir / "retired" / (model_name or settings.model_name)


def next_version(target: Path, retired: Path) -> int:
    """One above every version the repository holds or ever retired."""
    return max([0, *versions(target), *versions(retired)]) + 1


# The serving precision in config.pbtxt (serving/model/precision.py; the backend reads it at load).
PRECISION_ENTRY = re.compile(r'(\{ key: "PRECISION", value: \{ string_value: ")([^"]*)(" \} \})')


def config_precision(text: str) -> str | None:
    """The ``PRECISION`` parameter of a config.pbtxt, None when it names none."""
    found = PRECISION_ENTRY.search(text)
    return found.group(2) if found else None


def with_config_precision(text: str, precision: str) -> str:
    """config.pbtxt text with its ``PRECISION`` parameter set to ``precision``. A config without one
    gets it as a line of its own at the end (text format merges repeated ``parameters`` fields)."""
    check_precision(precision)
    if PRECISION_ENTRY.search(text):
        return PRECISION_ENTRY.sub(lambda m: m.group(1) + precision + m.group(3), text, count=1)
    return text.rstrip("\n") + f'\nparameters [ {{ key: "PRECISION", value: {{ string_value: "{precision}" }} }} ]\n'


def export_model(model_dir: Path, repo_dir: Path, model_name: str | None = None,
                 retired: Path | None = None, precision: str | None = None) -> int:
    """Copy ``model_dir`` into ``repo_dir/model_name`` (default: ``Settings.model_name``) as a new
    version; returns its number.
    ``retired`` (default ``retired_dir(model_name)``) holds numbers that must not be reused.
    ``precision`` (fp32 | bf16 | fp16 | int8) sets the model config's ``PRECISION`` first, which
    applies to every version of the model; without it the config's own is kept. Either way a
    precision the backend does not know is refused before any version is written."""
    model_name = model_name or get_settings().model_name
    model_dir, target = Path(model_dir), Path(repo_dir) / model_name
    target.mkdir(parents=True, exist_ok=True)
    config = target / "config.pbtxt"
    text = config.read_text() if config.exists() else \
        MODEL_NAME_LINE.sub(f'name: "{model_name}"', CONFIG_TEMPLATE.read_text(), count=1)
    if precision is not None:
        text = with_config_precision(text, precision)
    elif (named := config_precision(text)) is not None:
        check_precision(named)
    if not config.exists() or text != config.read_text():
        config.write_text(text)
    version = next_version(target, retired if retired is not None else retired_dir(model_name))
    staging = target / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name in ARTIFACTS:
            shutil.copy2(model_dir / name, staging / name)
        shutil.copy2(BACKEND, staging / "model.py")
        staging.rename(target / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed export leaves the repository as it was
        raise
    for old in versions(target)[:-KEEP_VERSIONS]:
        shutil.rmtree(target / str(old))
    return version


class RollbackRefused(RuntimeError):
    pass


def retire_newest(target: Path, retired: Path) -> tuple[int, int]:
    """Move the newest version of the model folder ``target`` to ``retired/<version>``, so Triton
    serves the one before; returns (retired version, version now served). Refuses to leave the
    model without a version."""
    held = versions(target)
    if len(held) < 2:
        raise RollbackRefused(f"{target} holds {'only version ' + str(held[0]) if held else 'no version'}; "
                              "nothing to roll back to")
    newest, previous = held[-1], held[-2]
    destination = retired / str(newest)
    if destination.exists():
        raise RollbackRefused(f"{destination} already exists; move it away first")
    # an atomic rename inside the repository first: Triton never sees a half-moved version
    leaving = target / f".retiring-{newest}"
    (target / str(newest)).rename(leaving)
    retired.mkdir(parents=True, exist_ok=True)
    shutil.move(leaving, destination)
    return newest, previous


def served_catalogue(target: Path) -> str | None:
    """The catalogue of the newest version of the model folder ``target`` (``trained_catalogue``),
    None when there is no version."""
    held = versions(target)
    if not held:
        return None
    return trained_catalogue(load_config(target / str(held[-1])))


def serves_catalogue(target: Path, catalogue: str) -> bool:
    """Whether the newest version was trained on ``catalogue``, so the worker shows its candidates
    (a retrain written before retrains named their catalogue counts as none)."""
    return served_catalogue(target) == catalogue


# The one way a trained model directory reaches Triton from the command line (serving.offline
# trains and writes directories; it does not import this package).
cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def publish(model_dir: Path = typer.Argument(..., help="a trained model directory (serving.offline.train --out)"),
            repo: Path = typer.Option(PROJECT_ROOT / "model_repo", help="Triton model repository"),
            model_name: str = typer.Option(None, help="model folder (default: RECO_MODEL_NAME)"),
            precision: str = typer.Option(None, help="fp32 | bf16 | fp16 | int8 (default: the config's)")) -> None:
    """Export ``model_dir`` into the repository as a new version (Triton serves the newest)."""
    version = export_model(model_dir, repo, model_name, precision=precision)
    print(f"exported {model_dir} as version {version} to {repo / (model_name or get_settings().model_name)}")


@cli.command()
def serves(catalogue: str = typer.Argument(..., help="synthetic | diginetica"),
           repo: Path = typer.Option(PROJECT_ROOT / "model_repo"),
           model_name: str = typer.Option(None, help="model folder (default: RECO_MODEL_NAME)")) -> None:
    """Exit 0 when the newest version in the repository was trained on ``catalogue`` (the
    Makefile trains one first otherwise), 1 when not (printing what it serves)."""
    target = repo / (model_name or get_settings().model_name)
    served = served_catalogue(target)
    if not serves_catalogue(target, catalogue):
        print(f"model_repo serves a model of the {served or 'no'} catalogue, not {catalogue}: training one")
        raise typer.Exit(1)


if __name__ == "__main__":
    cli()
