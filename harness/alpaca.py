"""The alpaca_eval package, imported with its global side effects undone, and its win rates.

Every statistic here is the package's own (`get_length_controlled_winrate`, which also computes the raw win rate);
this module only feeds it. Importing alpaca_eval reads a `.env` file into the environment, sets the root logger to
INFO and warns about pkg_resources: the import below takes those back. Its length-controlled (LC) win rate
downloads two files from the hub (df_gamed.csv, instruction_difficulty.csv) while it runs; `LCFiles` serves local
copies in their place when asked to, and a number computed with a local copy is marked approximate, since only the
hub's files give the leaderboard's numbers.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import UsageError, require

HUB_REPO = "tatsu-lab/alpaca_eval"
EVAL_SET_SIZE = 805
# what the CLI and a study config call each LC file, for error messages
LC_FILE_OPTIONS = {
    "df_gamed.csv": ("--df-gamed", "df_gamed"),
    "instruction_difficulty.csv": ("--instruction-difficulty", "instruction_difficulty"),
}
RESULT_KEYS = ("win_rate", "standard_error", "length_controlled_winrate", "lc_standard_error")


def import_alpaca_eval(module: str = "alpaca_eval") -> ModuleType:
    """Import (a module of) alpaca_eval, then restore the environment variables and root log level it changed."""
    environ, level = dict(os.environ), logging.getLogger().level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources deprecation, printed on every import
            return importlib.import_module(module)
    finally:
        os.environ.clear()
        os.environ.update(environ)
        logging.getLogger().setLevel(level)


@dataclass
class LCFiles:
    """Where the LC model's two files come from: local paths, or None for the hub. `used` records, as the package
    asks for them, each file's source ("hub" or the local path)."""

    df_gamed: str | None = None
    instruction_difficulty: str | None = None
    used: dict[str, str] = field(default_factory=dict)

    @property
    def approximate(self) -> bool:
        """True when a file the package used was a local copy rather than the hub's own."""
        return any(source != "hub" for source in self.used.values())

    def fetch(self, filename: str, download: Any, **kwargs: Any) -> str:
        """The path of `filename`: the local copy when one was given, else `download(filename=..., **kwargs)`."""
        local = {"df_gamed.csv": self.df_gamed, "instruction_difficulty.csv": self.instruction_difficulty}.get(filename)
        flag, key = LC_FILE_OPTIONS.get(filename, ("", ""))
        if local:
            require(Path(local).is_file(), f"{filename} copy {local!r} does not exist; fix {flag} (or {key})")
            self.used[filename] = local
            return local
        try:
            path = download(filename=filename, **kwargs)
        except Exception as err:  # the hub client raises many types when the hub is unreachable
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(
                f"the LC win rate needs {filename} from the hub dataset {HUB_REPO}, which could not be fetched "
                f"({first[:160]}); give a local copy with {flag} PATH (a study: tasks.<task>.{key}); numbers "
                "computed with a copy that is not the hub's are labelled approximate"
            ) from None
        self.used[filename] = "hub"
        return path

    @contextlib.contextmanager
    def served(self) -> Iterator[None]:
        """While inside, alpaca_eval's LC code gets its two hub files through `fetch`."""
        glm = import_alpaca_eval("alpaca_eval.metrics.glm_winrate")
        download = glm.hf_hub_download
        glm.hf_hub_download = lambda filename, **kwargs: self.fetch(filename, download, **kwargs)
        try:
            yield
        finally:
            glm.hf_hub_download = download


def win_rates(annotations: list[dict], files: LCFiles) -> dict:
    """Raw and length-controlled win rates of output_2 against output_1 (percent, with standard errors), computed
    by alpaca_eval. Rows must be in the eval set's canonical order (the LC model looks instructions up by position);
    rows whose preference is missing (a failed verdict) are left out of the raw rate, as the package does."""
    require(
        2 <= len(annotations) <= EVAL_SET_SIZE,
        f"win rates need 2 to {EVAL_SET_SIZE} annotations (one per instruction of the eval set), "
        f"got {len(annotations)}",
    )
    import pandas as pd

    frame = pd.DataFrame.from_records(annotations)
    frame["preference"] = [preference_value(p, i) for i, p in enumerate(frame["preference"])]
    require(frame["preference"].notna().any(), "no annotation has a preference; nothing to compute a win rate from")
    glm = import_alpaca_eval("alpaca_eval.metrics.glm_winrate")
    with files.served(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's notices about the package's arguments
        metrics = glm.get_length_controlled_winrate(frame, save_weights_dir=None, is_add_glm_preference_inplace=False)
    out = {key: _plain(value) for key, value in metrics.items()}
    out["n_missing"] = int(frame["preference"].isna().sum())
    out["approximate"] = files.approximate
    out["lc_files"] = dict(files.used)
    return out


def preference_value(value: Any, row: int) -> float:
    """A preference as a float in [1, 2] (0, an old encoding of a tie, becomes 1.5); None or NaN for a failed one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"annotation {row} has preference {value!r}; expected a number in [1, 2] or null") from None
    number = 1.5 if number == 0 else number
    require(
        math.isnan(number) or 1 <= number <= 2,
        f"annotation {row} has preference {value!r}; expected a number in [1, 2] (2: output_2 preferred) or null",
    )
    return number


def read_annotations(path: Path) -> list[dict]:
    """Rows of an alpaca_eval annotations file (a JSON list with preference, output_1/2, generator_1/2); a
    directory stands for the annotations.json in it."""
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.json"
    require(path.is_file(), f"annotations file {str(path)!r} does not exist; give an alpaca_eval annotations.json")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"annotations file {str(path)!r} is not readable JSON ({err})") from None
    require(
        isinstance(rows, list) and all(isinstance(r, dict) for r in rows),
        f"annotations file {str(path)!r} must be a JSON list of objects, as alpaca_eval writes it",
    )
    needed = ("preference", "output_1", "output_2", "generator_1", "generator_2")
    for i, row in enumerate(rows):
        missing = [k for k in needed if k not in row]
        require(not missing, f"annotation {i} of {str(path)!r} lacks {', '.join(missing)}; is it alpaca_eval's?")
    generators = sorted({str(r["generator_2"]) for r in rows})
    require(len(generators) <= 1, f"{str(path)!r} mixes models ({', '.join(generators[:3])}); give one model's file")
    return rows


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers and NaN as None, so results serialise as strict JSON."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value
