"""Build config/deprivation/postcode_district_deciles.csv from the published files.

    python scripts/build_deprivation_lookup.py --iod IoD_File_1.csv \
        --postcodes ONSPD.csv [--lsoa-column lsoa11] > postcode_district_deciles.csv

--iod: the English Indices of Deprivation, File 1 (one row per LSOA: its code and IMD rank).
--postcodes: the ONS Postcode Directory (or NSPL): pcds, doterm, usertype, ctry, the LSOA code.
Per postcode district (the outward code) of England's live residential postcodes: the decile
of the median IMD rank of its postcodes, with the Indices' own cut-offs (rank x 10 / number of
LSOAs, rounded up). See docs/reports.md, "Deprivation deciles".
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable
from typing import TextIO

ENGLAND = "E92000001"


def _column(header: list[str], *wanted: str) -> str:
    for name in header:
        low = name.lower()
        if all(w in low for w in wanted):
            return name
    raise SystemExit(f"no column with {' and '.join(wanted)!r} in {header}")


def read_ranks(rows: Iterable[dict[str, str]], header: list[str]) -> dict[str, int]:
    code = _column(header, "lsoa code")
    rank = _column(header, "index of multiple deprivation", "rank")
    return {row[code].strip(): int(row[rank]) for row in rows}


def district_deciles(ranks: dict[str, int], postcodes: Iterable[dict[str, str]],
                     lsoa_column: str) -> dict[str, int]:
    by_district: dict[str, list[int]] = defaultdict(list)
    for row in postcodes:
        if row.get("doterm", "").strip() or row.get("usertype", "0").strip() != "0":
            continue
        if row.get("ctry", ENGLAND).strip() != ENGLAND:
            continue
        rank = ranks.get(row.get(lsoa_column, "").strip())
        postcode = row.get("pcds", "").strip().upper()
        if rank is None or " " not in postcode:
            continue
        by_district[postcode.split(" ")[0]].append(rank)
    areas = len(ranks)
    return {district: min(10, max(1, math.ceil(statistics.median(found) * 10 / areas)))
            for district, found in by_district.items()}


def write(deciles: dict[str, int], out: TextIO) -> None:
    out.write("postcode_district,decile\n")
    for district in sorted(deciles):
        out.write(f"{district},{deciles[district]}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iod", required=True)
    parser.add_argument("--postcodes", required=True)
    parser.add_argument("--lsoa-column", default="lsoa11")
    args = parser.parse_args()
    with open(args.iod, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        ranks = read_ranks(reader, list(reader.fieldnames or []))
    with open(args.postcodes, newline="", encoding="utf-8-sig") as fh:
        deciles = district_deciles(ranks, csv.DictReader(fh), args.lsoa_column)
    write(deciles, sys.stdout)


if __name__ == "__main__":
    main()
