"""The published code lists the mapping reads observations by: smoking, HbA1c, BMI, blood
pressure and ethnicity codes from config/terminology/ (PCD reference sets, PRIMIS and OpenSAFELY
lists; provenance in its MANIFEST.yaml), on top of the standard codes named in the modules that
use them (RULE-PACK.md, "FHIR mapping for the built-in facts").

The lists are read once per folder, so an operator refreshes them by replacing the CSVs with a
newer release (and restarting), as for the value sets. Each list's rows are taken as published,
except where a term shows the code is not a value the rule means; each such exclusion says why.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from mecc.clinical.terminology import TerminologyError, read_list

log = logging.getLogger(__name__)

# file -> what its codes are read as
SMOKING_LISTS = {"smoking_current_snomed_pcd_lsmok_cod.csv": "current",  # PCD LSMOK_COD
                 "smoking_ex_snomed_pcd_exsmok_cod.csv": "ex"}  # PCD EXSMOK_COD
# HbA1c codes and the unit a value without one is in (None: the unit must be sent).
HBA1C_LISTS = {"hba1c_snomed_pcd_ifcchbam_cod.csv": "mmol/mol",  # PCD IFCCHBAM_COD
               "hba1c_snomed_opensafely_numerical_value.csv": "mmol/mol",
               "hba1c_snomed_opensafely_tests.csv": None}
BMI_LISTS = ("bmi_snomed_pcd_bmival_cod.csv", "bmi_snomed_primis_bmi.csv")  # PCD BMIVAL_COD
SYSTOLIC_LISTS = ("blood_pressure_systolic_snomed_opensafely_qof.csv",)
DIASTOLIC_LISTS = ("blood_pressure_diastolic_snomed_user_milanwiedemann_qof.csv",)
BP_LISTS = ("blood_pressure_snomed_pcd_bp_cod.csv",)  # PCD BP_COD: panels, readings, findings
ETHNICITY_LISTS = ("ethnicity_snomed_primis_eth2001.csv",
                   "ethnicity_snomed_opensafely_ethnicity_snomed_0removed.csv")

# Smoking codes that only say something about smoking when they carry a number above zero:
# "Cigarette consumption: 0/day" is not a current smoker. Their meaning stays that of the list.
CONSUMPTION = re.compile(r"\bconsumption\b|\bminutes from waking\b", re.IGNORECASE)
# Blood pressure values that are not a reading the >= 140/90 rule means: extremes of a series,
# a mean arterial pressure, and findings that carry no number.
NOT_A_READING = re.compile(r"\b(minimum|maximum|mean|abnormal|increased|decreased|normal|"
                           r"response|finding)\b", re.IGNORECASE)
# HbA1c "findings" (diabetic control) are not measurements; a DCCT-aligned code is in %.
HBA1C_FINDING = re.compile(r"\bfinding\b|\bNOS\b|diabetic control", re.IGNORECASE)
HBA1C_DCCT = re.compile(r"Diabetes Control and Complications Trial", re.IGNORECASE)

# The 16 census groups (2001 / 2011 England and Wales) -> ethnicity_group.
CENSUS_16 = {1: "white", 2: "white", 3: "white", 4: "mixed", 5: "mixed", 6: "mixed", 7: "mixed",
             8: "south_asian", 9: "south_asian", 10: "south_asian", 11: "other_asian",
             12: "black_caribbean", 13: "black_african", 14: "black_other", 15: "chinese",
             16: "other"}
# Within "any other ethnic group" (16): Arab, Iranian and Middle Eastern codes are the people
# NICE NG246 names for its lower BMI thresholds, so they are told apart from the rest.
MIDDLE_EASTERN = re.compile(r"\b(arabs?|iranian|irani|middle eastern)\b", re.IGNORECASE)


@dataclass(frozen=True)
class CodeTables:
    """SNOMED CT code -> meaning, for the observation lists; empty when no lists were found."""

    smoking: Mapping[str, str] = field(default_factory=dict)  # -> current / ex
    consumption: frozenset[str] = frozenset()  # smoking codes that need a number above 0
    hba1c: Mapping[str, str | None] = field(default_factory=dict)  # -> default unit
    bmi: frozenset[str] = frozenset()
    systolic: frozenset[str] = frozenset()
    diastolic: frozenset[str] = frozenset()
    bp_panels: frozenset[str] = frozenset()  # read through their components
    ethnicity: Mapping[str, str] = field(default_factory=dict)  # -> ethnicity_group
    files: tuple[str, ...] = ()  # the lists read

    @property
    def observation_codes(self) -> frozenset[str]:
        """Every SNOMED CT code an Observation's value can be read under (for prefetch)."""
        return frozenset(self.smoking) | frozenset(self.hba1c) | self.bmi | self.systolic \
            | self.diastolic | self.bp_panels


def _rows(folder: Path, file: str) -> list[tuple[str, str]]:
    return [(code, term) for code, term in read_list(folder / file) if code.isdigit()]


def _ethnicity(folder: Path, file: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with (folder / file).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            code = (row.get("code") or "").strip()
            raw = (row.get("category_16") or "").strip()
            if not code.isdigit() or not raw.isdigit() or int(raw) not in CENSUS_16:
                continue
            group = CENSUS_16[int(raw)]
            if int(raw) == 16 and MIDDLE_EASTERN.search(row.get("term") or ""):
                group = "middle_eastern"
            out.setdefault(code, group)
    return out


def load_code_tables(folder: Path) -> CodeTables:
    """Read the observation and ethnicity lists of `folder` (TerminologyError when broken)."""
    smoking: dict[str, str] = {}
    consumption: set[str] = set()
    for file, meaning in SMOKING_LISTS.items():
        for code, term in _rows(folder, file):
            smoking.setdefault(code, meaning)
            if CONSUMPTION.search(term):
                consumption.add(code)
    hba1c: dict[str, str | None] = {}
    for file, unit in HBA1C_LISTS.items():
        for code, term in _rows(folder, file):
            if HBA1C_FINDING.search(term):
                continue
            hba1c.setdefault(code, "%" if HBA1C_DCCT.search(term) else unit)
    bmi = {code for file in BMI_LISTS for code, _ in _rows(folder, file)}
    readings = [(c, t) for file in (*SYSTOLIC_LISTS, *DIASTOLIC_LISTS, *BP_LISTS)
                for c, t in _rows(folder, file)]
    systolic = {c for c, t in readings if "systolic" in t.lower() and not NOT_A_READING.search(t)}
    diastolic = {c for c, t in readings
                 if "diastolic" in t.lower() and not NOT_A_READING.search(t)}
    panels = {c for file in BP_LISTS for c, t in _rows(folder, file)
              if "systolic" not in t.lower() and "diastolic" not in t.lower()}
    ethnicity: dict[str, str] = {}
    for file in ETHNICITY_LISTS:
        for code, group in _ethnicity(folder, file).items():
            ethnicity.setdefault(code, group)
    files = (*SMOKING_LISTS, *HBA1C_LISTS, *BMI_LISTS, *SYSTOLIC_LISTS, *DIASTOLIC_LISTS,
             *BP_LISTS, *ETHNICITY_LISTS)
    return CodeTables(smoking=smoking, consumption=frozenset(consumption), hba1c=hba1c,
                      bmi=frozenset(bmi), systolic=frozenset(systolic),
                      diastolic=frozenset(diastolic), bp_panels=frozenset(panels),
                      ethnicity=ethnicity, files=files)


@cache
def code_tables(config_dir: str | Path) -> CodeTables:
    """The lists of `config_dir`/terminology, read once. Without that folder only the standard
    codes are read (a warning is logged: UK-coded observations would then be missed)."""
    folder = Path(config_dir) / "terminology"
    if not folder.is_dir():
        log.warning("no terminology folder: UK observation code lists not read",
                    extra={"folder": str(folder)})
        return CodeTables()
    try:
        return load_code_tables(folder)
    except (OSError, TerminologyError) as exc:
        raise TerminologyError(f"{folder}: the observation code lists cannot be read: "
                               f"{exc}") from exc


DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "config"


def default_tables() -> CodeTables:
    """The lists shipped in the repository's config/ (for callers without a runtime)."""
    return code_tables(str(DEFAULT_CONFIG))
