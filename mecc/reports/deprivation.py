"""Deprivation decile of a postcode district, from a lookup the operator configures.

`config/deprivation/postcode_district_deciles.csv`: a header line `postcode_district,decile`,
then one district per line with its decile, 1 (the most deprived tenth of England) to 10;
lines starting with `#` are comments. How to build it from the English Indices of
Deprivation and the ONS postcode lookup: docs/reports.md. The shipped
`postcode_district_deciles.EXAMPLE.csv` shows the format with made-up values and is never
read: without the real file every district reports as `unknown`.

Reports map the district recorded at each contact through the lookup in force when the
report runs, so a new edition of the Indices re-bases the whole history consistently.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Mapping
from pathlib import Path

from mecc.reports.attributes import UNKNOWN

LOOKUP_FILE = Path("deprivation") / "postcode_district_deciles.csv"
_cache: dict[Path, tuple[float, dict[str, int]]] = {}
_lock = threading.Lock()


class DeprivationLookupError(ValueError):
    """The lookup file is broken; the message names the file and line."""


def lookup_path(config_dir: str | Path) -> Path:
    return Path(config_dir) / LOOKUP_FILE


def parse_lookup(path: Path, text: str) -> dict[str, int]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return {}
    header = [h.strip().lower() for h in next(csv.reader([lines[0][1]]))]
    if header[:2] != ["postcode_district", "decile"]:
        raise DeprivationLookupError(
            f"{path}, line {lines[0][0]}: the header must be 'postcode_district,decile'")
    out: dict[str, int] = {}
    for number, line in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([line]))]
        if len(cells) < 2 or not cells[0]:
            raise DeprivationLookupError(f"{path}, line {number}: expected 'district,decile'")
        district = cells[0].upper()
        try:
            decile = int(cells[1])
        except ValueError:
            decile = 0
        if not 1 <= decile <= 10:
            raise DeprivationLookupError(
                f"{path}, line {number}: decile for {district} must be 1-10, got {cells[1]!r}")
        if district in out and out[district] != decile:
            raise DeprivationLookupError(
                f"{path}, line {number}: {district} is listed twice with different deciles")
        out[district] = decile
    return out


def load_lookup(config_dir: str | Path) -> dict[str, int]:
    """The configured lookup (empty when there is none); re-read when the file changes."""
    path = lookup_path(config_dir)
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    hit = _cache.get(path)
    if hit is not None and hit[0] == modified:
        return hit[1]
    table = parse_lookup(path, path.read_text(encoding="utf-8-sig"))
    with _lock:
        _cache[path] = (modified, table)
    return table


def decile_of(district: str | None, lookup: Mapping[str, int]) -> str:
    """'1'..'10', or 'unknown' for a district not sent or not in the lookup."""
    if not district or district == UNKNOWN:
        return UNKNOWN
    decile = lookup.get(district.upper())
    return str(decile) if decile is not None else UNKNOWN
