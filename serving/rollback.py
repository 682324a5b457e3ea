"""Take the newest model version out of service: Triton then serves the one before it.

    python -m serving.rollback

The newest version folder of RECO_MODEL_REPO/RECO_MODEL_NAME moves to
RECO_RUN_DIR/retired/<model name>/<version> (Triton polls the repository every 5 s and serves the
newest version left). Refused when only one version is left. Later exports never reuse the
retired number (serving/online/export.py).
"""
from __future__ import annotations

import typer

from contract.settings import Settings, get_settings
from serving.online.export import RollbackRefused, retire_newest, retired_dir

cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


def roll_back(settings: Settings) -> str:
    """Retire the newest version; the line that says from which version to which."""
    target = settings.model_repo / settings.model_name
    retired = retired_dir(settings.model_name, settings)
    newest, previous = retire_newest(target, retired)
    return (f"{settings.model_name}: rolled back from version {newest} to version {previous} "
            f"(version {newest} kept in {retired / str(newest)})")


@cli.command()
def main() -> None:
    try:
        typer.echo(roll_back(get_settings()))
    except RollbackRefused as refused:
        typer.echo(f"rollback refused: {refused}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    cli()
