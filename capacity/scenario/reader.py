"""Reading a TOML table strictly: known keys only, checked types, finite numbers in range.

Every problem is a ConfigError naming the file and the full key, so a typo stops the run
before any load: `scenarios/x.toml: key 'load.users': must be between 1 and 100000`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NoReturn

from capacity.errors import ConfigError

MAX_TEXT_FILE_BYTES = 1024 * 1024  # a scenario, GraphQL document or rules file
MAX_DATA_FILE_BYTES = 256 * 1024 * 1024  # a data pool CSV


def type_name(value: Any) -> str:
    return {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def kinds_name(kinds: tuple[type, ...]) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}
    names[dict] = "table"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_text_file(path: Path, what: str, limit: int = MAX_TEXT_FILE_BYTES) -> str:
    """A small UTF-8 text file, or one ConfigError line saying why not."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(f"{path}: {what} is {size:,} bytes; the limit is {limit:,}")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


class Section:
    """A TOML table being read: tracks which keys were consumed so leftovers are errors."""

    def __init__(self, file: Path, key: str, table: Any) -> None:
        self.file = file
        self.key = key
        if not isinstance(table, dict):
            raise self.error(key, f"expected a table, got {type_name(table)}")
        self.table: dict[str, Any] = table
        self.seen: set[str] = set()

    def error(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.file}: key '{key}': {what}")

    def path(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(self.path(key), f"expected {kinds_name(kinds)}, got boolean")
        if not isinstance(value, kinds):
            raise self.error(
                self.path(key), f"expected {kinds_name(kinds)}, got {type_name(value)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(self.path(key), f"must be a finite number, got {value}")
        return value

    def require(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.table:
            raise self.error(self.path(key), "is required")
        return self.get(key, kind)

    def number(
        self, key: str, default: float, low: float, high: float, *, low_open: bool = False
    ) -> float:
        """A finite number in [low, high] (or (low, high] with `low_open`)."""
        value = float(self.get(key, float, default))
        if value > high or value < low or (low_open and value == low):
            bound = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
            raise self.error(self.path(key), f"must be in {bound}, got {value:g}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = int(self.get(key, int, default))
        if not low <= value <= high:
            raise self.error(self.path(key), f"must be between {low} and {high}, got {value}")
        return value

    def positive(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        """A finite number > 0 (>= 0 with `allow_zero`), at most a year of seconds or 10^9."""
        value = self.get(key, float, default)
        if value < 0 or (value == 0 and not allow_zero):
            raise self.error(self.path(key), f"must be {'>= 0' if allow_zero else '> 0'}")
        if value > 1e9:
            raise self.error(self.path(key), f"is too large ({value:g})")
        return float(value)

    def file_path(self, key: str, base: Path) -> Path:
        """A required path key, relative to the scenario's folder, that must name a file."""
        path = (base / self.require(key, str)).resolve()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "file not found"
            raise self.error(self.path(key), f"{what}: {path}")
        return path

    def sub(self, key: str) -> Section | None:
        self.seen.add(key)
        if key not in self.table:
            return None
        return Section(self.file, self.path(key), self.table[key])

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.error(self.path(unknown[0]), "unknown key")


def missing(sec: Section, key: str) -> NoReturn:
    raise sec.error(sec.path(key), "is required")
