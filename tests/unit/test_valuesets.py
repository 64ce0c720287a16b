"""The shipped value sets (config/valuesets.yaml): built from the published lists in
config/terminology/, every group RULE-PACK.md names, its codes, sources and counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mecc.clinical.catalogue import DMD, ICD10_SYSTEMS, SNOMED, load_catalogue
from mecc.clinical.terminology import build, read_list, render

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
TERMINOLOGY = CONFIG / "terminology"
CATALOGUE = load_catalogue(CONFIG)
BUILT = build(TERMINOLOGY)

LTC_GROUPS = (
    "diabetes_type1", "diabetes_type2", "copd", "asthma", "heart_failure",
    "coronary_heart_disease", "hypertension", "stroke_tia", "ckd", "atrial_fibrillation",
    "depression", "anxiety", "dementia", "cancer", "osteoarthritis", "rheumatoid_arthritis",
    "serious_mental_illness", "epilepsy", "learning_disability",
)
NEW_GROUPS = ("diabetes_any", "obesity", "carer", "frailty_mild", "frailty_moderate",
              "frailty_severe")

# RULE-PACK.md, "Value sets: the starting codes": the shipped sets must hold at least these.
REQUIRED_SNOMED = {
    "diabetes_type1": ["46635009"],
    "diabetes_type2": ["44054006"],
    "copd": ["13645005"],
    "asthma": ["195967001"],
    "heart_failure": ["84114007"],
    "coronary_heart_disease": ["53741008", "22298006"],
    "hypertension": ["38341003"],
    "stroke_tia": ["230690007", "266257000"],
    "ckd": ["709044004"],
    "atrial_fibrillation": ["49436004"],
    "depression": ["35489007"],
    "anxiety": ["197480006"],
    "dementia": ["52448006"],
    "cancer": ["363346000"],
    "osteoarthritis": ["396275006"],
    "rheumatoid_arthritis": ["69896004"],
    "serious_mental_illness": ["58214004", "13746004"],
    "epilepsy": ["84757009"],
    "learning_disability": ["110359009"],
    # The misses: diabetes mellitus (type not stated) and a complication.
    "diabetes_any": ["73211009", "44054006", "46635009", "4855003"],
    "obesity": ["414915002"],
    "carer": ["224484003"],
    "frailty_moderate": ["925831000000107"],
}

REQUIRED_ICD10 = {
    "diabetes_type1": ["E10"],
    "diabetes_type2": ["E11"],
    "diabetes_any": ["E10", "E11", "E13", "E14", "E08", "E09"],
    "copd": ["J43", "J44"],
    "asthma": ["J45", "J46"],
    "heart_failure": ["I50"],
    "coronary_heart_disease": ["I20", "I21", "I22", "I23", "I24", "I25"],
    "hypertension": ["I10", "I11", "I12", "I13", "I15", "I16"],
    "stroke_tia": ["I60", "I61", "I62", "I63", "I64", "G45"],
    "ckd": ["N18"],
    "atrial_fibrillation": ["I48"],
    "depression": ["F32", "F33"],
    "anxiety": ["F41"],
    "dementia": ["F00", "F01", "F02", "F03", "G30"],
    "osteoarthritis": ["M15", "M16", "M17", "M18", "M19"],
    "rheumatoid_arthritis": ["M05", "M06"],
    "serious_mental_illness": ["F20", "F25", "F31"],
    "epilepsy": ["G40", "G41"],
    "learning_disability": ["F70", "F71", "F72", "F73", "F78", "F79"],
    "obesity": ["E66"],
}
# Categories of C00-C97 that ICD-10 leaves unused.
UNUSED_CANCER_CATEGORIES = {"C27", "C28", "C29", "C35", "C36", "C42", "C59", "C87", "C89"}
CANCER_CATEGORIES = [
    f"C{n:02d}" for n in range(0, 98) if f"C{n:02d}" not in UNUSED_CANCER_CATEGORIES
]


# ------------------------------------------------------------------------------ built from lists
def test_the_shipped_file_is_what_the_published_lists_build() -> None:
    # Run `mecc valuesets build` after changing build.yaml or a list.
    assert render(BUILT) == (CONFIG / "valuesets.yaml").read_text(encoding="utf-8")
    assert BUILT.notes == []


def test_every_list_used_is_in_the_repository_with_its_provenance() -> None:
    manifest = yaml.safe_load((TERMINOLOGY / "MANIFEST.yaml").read_text())
    known = {e["file"] for e in manifest["lists"]} | {
        e["file"] for e in manifest["medication_lists"]}
    for built in [*BUILT.groups, *BUILT.medicines]:
        assert built.sources or built.changes, built.name
        for source in built.sources:
            file = source["file"].removeprefix("terminology/")
            assert (TERMINOLOGY / file).is_file(), file
            assert file in known, file
            assert source["version"] and source["list"] and source["publisher"], source


def test_every_group_names_its_sources_versions_and_counts_in_config() -> None:
    raw = yaml.safe_load((CONFIG / "valuesets.yaml").read_text())
    for name, group in raw["groups"].items():
        assert group["sources"], name
        assert set(group["counts"]) == {"snomed", "icd10", "resolved", "local_changes"}, name
        spec = CATALOGUE.groups[name]
        assert spec.sources == tuple(group["sources"])
        if not spec.includes:
            assert group["counts"]["snomed"] == len(spec.snomed), name
    for name, medicine in raw["medicines"].items():
        assert medicine["counts"]["dmd"] == len(CATALOGUE.medicines[name].codes)


def test_pcd_lists_come_first() -> None:
    # Each group with a PCD reference set names it before any wider list.
    for built in BUILT.groups:
        publishers = [s["publisher"] for s in built.sources if s["system"] == "snomed"]
        pcd = [i for i, p in enumerate(publishers) if "PCD" in p]
        if pcd:
            assert pcd[0] == 0, (built.name, publishers)


def test_every_code_of_a_pcd_list_is_in_its_group() -> None:
    for built in BUILT.groups:
        group = CATALOGUE.groups[built.name]
        for source in built.sources:
            if "PCD" not in source["publisher"] or source["system"] != "snomed":
                continue
            codes = {code for code, _ in read_list(TERMINOLOGY / source["file"].split("/")[1])}
            assert codes - group.resolved <= group.snomed, (built.name, source["file"])


# ------------------------------------------------------------------------------ groups and codes
def test_every_ltc_group_is_present_and_counts_as_a_long_term_condition() -> None:
    assert set(LTC_GROUPS) <= set(CATALOGUE.groups)
    assert CATALOGUE.ltc_groups == set(LTC_GROUPS)
    for name in LTC_GROUPS:
        group = CATALOGUE.groups[name]
        assert group.ltc, name
        assert group.title and group.title != name, name
        assert group.snomed and group.icd10, name


def test_the_new_groups_do_not_count_as_long_term_conditions() -> None:
    # diabetes_any shares every code of the two diabetes types: counting it would count twice.
    for name in NEW_GROUPS:
        assert name in CATALOGUE.groups and not CATALOGUE.groups[name].ltc, name


@pytest.mark.parametrize(
    ("group", "code"),
    [(group, code) for group, codes in REQUIRED_SNOMED.items() for code in codes],
)
def test_required_snomed_code_maps_to_its_group(group: str, code: str) -> None:
    assert group in CATALOGUE.groups_for_code(SNOMED, code)


@pytest.mark.parametrize(
    ("group", "category"),
    [(group, code) for group, codes in REQUIRED_ICD10.items() for code in codes]
    + [("cancer", code) for code in CANCER_CATEGORIES],
)
@pytest.mark.parametrize("system", ICD10_SYSTEMS)
def test_icd10_category_maps_to_its_group(group: str, category: str, system: str) -> None:
    assert group in CATALOGUE.groups_for_code(system, category)


@pytest.mark.parametrize(
    ("code", "groups"),
    [
        ("J44.9", {"copd"}), ("J44.1", {"copd"}),
        ("E11.65", {"diabetes_type2", "diabetes_any"}),
        ("E11.9", {"diabetes_type2", "diabetes_any"}),
        ("E10.9", {"diabetes_type1", "diabetes_any"}),
        ("E14.9", {"diabetes_any"}), ("I21.4", {"coronary_heart_disease"}),
        ("I50.0", {"heart_failure"}), ("N18.3", {"ckd"}), ("F32.1", {"depression"}),
        ("C50.9", {"cancer"}), ("G45.9", {"stroke_tia"}), ("j45.9", {"asthma"}),
        (" I10 ", {"hypertension"}), ("I48.91", {"atrial_fibrillation"}),
        ("F03.X", {"dementia"}), ("M17.0", {"osteoarthritis"}),
        ("F20.0", {"serious_mental_illness"}), ("E66.01", {"obesity"}),
        # A subcategory a list takes without its whole category.
        ("I11.0", {"heart_failure", "hypertension"}), ("H36.0", {"diabetes_any"}),
        ("O24.1", {"diabetes_any"}),
    ],
)
@pytest.mark.parametrize("system", ICD10_SYSTEMS)
def test_full_icd10_codes_map_by_category_or_subcategory(
    code: str, groups: set[str], system: str,
) -> None:
    assert set(CATALOGUE.groups_for_code(system, code)) == groups


def test_codes_outside_the_value_sets_map_to_nothing() -> None:
    assert CATALOGUE.groups_for_code(SNOMED, "999999999") == ()
    assert CATALOGUE.groups_for_code(ICD10_SYSTEMS[0], "J18.9") == ()  # pneumonia
    assert CATALOGUE.groups_for_code(ICD10_SYSTEMS[0], "O24.4") == ()  # gestational diabetes
    assert CATALOGUE.groups_for_code(ICD10_SYSTEMS[0], "I11.9") == ("hypertension",)
    assert CATALOGUE.groups_for_code(ICD10_SYSTEMS[0], "J40") == ()  # bronchitis NOS
    assert CATALOGUE.groups_for_code("http://loinc.org", "44054006") == ()


def test_the_two_diabetes_types_stay_separate_and_inside_diabetes_any() -> None:
    type1, type2 = CATALOGUE.groups["diabetes_type1"], CATALOGUE.groups["diabetes_type2"]
    any_ = CATALOGUE.groups["diabetes_any"]
    assert not type1.snomed & type2.snomed
    assert type1.icd10 == {"E10"} and type2.icd10 == {"E11"}
    assert type1.snomed | type2.snomed <= any_.snomed
    assert type1.icd10 | type2.icd10 <= any_.icd10
    # DM_COD widened with PRIMIS DIAB: every code of both lists.
    for file in ("diabetes_any_snomed_pcd_dm_cod.csv", "diabetes_any_snomed_primis_diab.csv"):
        assert {c for c, _ in read_list(TERMINOLOGY / file)} <= any_.snomed


def test_a_sender_mapped_diabetes_type_is_also_diabetes_of_any_type() -> None:
    assert CATALOGUE.with_including_groups(["diabetes_type2"]) == (
        "diabetes_any", "diabetes_type2")
    assert CATALOGUE.with_including_groups(["copd"]) == ("copd",)


def test_resolved_codes_end_their_groups() -> None:
    assert set(CATALOGUE.groups_resolved_by(SNOMED, "315051004")) == {
        "diabetes_any", "diabetes_type1", "diabetes_type2"}  # Diabetes resolved
    assert CATALOGUE.groups_resolved_by(SNOMED, "162659009") == ("hypertension",)
    assert CATALOGUE.groups_resolved_by(SNOMED, "506401000000109") == ("carer",)  # Not a carer
    # A remission code ends serious mental illness; it is never also a diagnosis code of it.
    smi = CATALOGUE.groups["serious_mental_illness"]
    assert smi.resolved and not smi.resolved & smi.snomed


def test_frailty_and_carer_codes_imply_facts() -> None:
    implied = {name: dict(g.implies) for name, g in CATALOGUE.groups.items() if g.implies}
    assert implied == {"carer": {"is_carer": True},
                       "frailty_mild": {"efi_category": "mild"},
                       "frailty_moderate": {"efi_category": "moderate"},
                       "frailty_severe": {"efi_category": "severe"}}


def test_medicine_classes_map_dmd_codes_sent_as_dmd_or_snomed() -> None:
    assert set(CATALOGUE.medicines) == {"diabetes", "hypertension"}
    metformin_tablets = "325278007"  # a VMP in the antidiabetic list
    assert metformin_tablets in CATALOGUE.medicines["diabetes"].codes
    for system in (DMD, SNOMED):
        assert CATALOGUE.medicine_classes_for_code(system, metformin_tablets) == ("diabetes",)
    assert CATALOGUE.medicine_classes_for_code("http://www.nlm.nih.gov/research/umls/rxnorm",
                                               metformin_tablets) == ()
    insulin = {c for c, _ in read_list(
        TERMINOLOGY / "medication_insulin_dmd_opensafely_insulin_medication.csv")}
    assert insulin <= CATALOGUE.medicines["diabetes"].codes
    assert len(CATALOGUE.medicines["hypertension"].codes) == 6594
