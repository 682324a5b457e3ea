"""Write a trained model directory into a Triton model repository as a new version.

The version folder is assembled under a temporary name and renamed into place, so Triton's
repository poller never sees a half-written version (this is what makes hot swaps safe).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from contract.settings import PROJECT_ROOT

BACKEND = Path(__file__).resolve().parent / "triton_backend.py"
CONFIG_TEMPLATE = PROJECT_ROOT / "model_repo" / "session_transformer" / "config.pbtxt"
ARTIFACTS = ("config.json", "weights.pt", "vocab.json")
KEEP_VERSIONS = 3


def versions(model_dir: Path) -> list[int]:
    if not model_dir.exists():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def export_model(model_dir: Path, repo_dir: Path, model_name: str = "session_transformer") -> int:
    model_dir, target = Path(model_dir), Path(repo_dir) / model_name
    target.mkdir(parents=True, exist_ok=True)
    config = target / "config.pbtxt"
    if not config.exists():
        text = CONFIG_TEMPLATE.read_text().replace('name: "session_transformer"', f'name: "{model_name}"')
        config.write_text(text)
    version = (versions(target) or [0])[-1] + 1
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
