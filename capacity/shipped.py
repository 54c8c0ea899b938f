"""Files shipped inside the package: scenarios, their documents and data, and locustfiles.

Found through the installed package (`importlib.resources`), never relative to a checkout, so a
wheel installed anywhere runs them. In a checkout, `scenarios/` and `locustfiles/` at the top
are links to these folders.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from capacity.errors import ConfigError

SCENARIOS_DIR = Path(str(files("capacity") / "scenarios"))
LOCUSTFILES_DIR = Path(str(files("capacity") / "locustfiles"))
DEFAULT_SCENARIO = "smoke.toml"
DEFAULT_LOCUSTFILE = "erp.py"


def scenario_path(name: str = DEFAULT_SCENARIO) -> Path:
    """A shipped scenario by file name (`smoke.toml`) or stem (`smoke`)."""
    path = SCENARIOS_DIR / (name if name.endswith(".toml") else f"{name}.toml")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml")))
        raise ConfigError(f"no shipped scenario '{name}' (shipped: {known})")
    return path


def locustfile_path(name: str = DEFAULT_LOCUSTFILE) -> Path:
    """A shipped locustfile by file name (`erp.py`) or stem (`erp`)."""
    path = LOCUSTFILES_DIR / (name if name.endswith(".py") else f"{name}.py")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in LOCUSTFILES_DIR.glob("*.py")))
        raise ConfigError(f"no shipped locustfile '{name}' (shipped: {known})")
    return path


def write_starter(dest: Path) -> list[Path]:
    """Copy the shipped scenarios with their documents and data into `dest` for a user to edit.

    Refuses to write over existing files, so a second `capacity init` cannot lose edits.
    """
    sources = [p for p in SCENARIOS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    clashes = [dest / p.relative_to(SCENARIOS_DIR) for p in sources]
    existing = [p for p in clashes if p.exists()]
    if existing:
        raise ConfigError(f"{existing[0]}: already exists; choose an empty or new folder")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest}: exists and is not a folder")
    written: list[Path] = []
    for src, target in zip(sources, clashes, strict=True):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        except OSError as exc:
            raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from None
        written.append(target)
    return written
