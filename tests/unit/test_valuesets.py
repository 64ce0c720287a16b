"""The shipped value sets (config/valuesets.yaml): every group RULE-PACK.md names, its codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mecc.clinical.catalogue import ICD10_SYSTEMS, SNOMED, load_catalogue

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")

LTC_GROUPS = (
    "diabetes_type1", "diabetes_type2", "copd", "asthma", "heart_failure",
    "coronary_heart_disease", "hypertension", "stroke_tia", "ckd", "atrial_fibrillation",
    "depression", "anxiety", "dementia", "cancer", "osteoarthritis", "rheumatoid_arthritis",
    "serious_mental_illness", "epilepsy", "learning_disability",
)

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
}

REQUIRED_ICD10 = {
    "diabetes_type1": ["E10"],
    "diabetes_type2": ["E11"],
    "copd": ["J43", "J44"],
    "asthma": ["J45", "J46"],
    "heart_failure": ["I50"],
    "coronary_heart_disease": ["I20", "I21", "I22", "I23", "I24", "I25"],
    "hypertension": ["I10", "I11", "I12", "I13", "I15"],
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
}
# Categories of C00-C97 that ICD-10 leaves unused.
UNUSED_CANCER_CATEGORIES = {"C27", "C28", "C29", "C35", "C36", "C42", "C59", "C87", "C89"}
CANCER_CATEGORIES = [
    f"C{n:02d}" for n in range(0, 98) if f"C{n:02d}" not in UNUSED_CANCER_CATEGORIES
]


def test_every_ltc_group_is_present_and_counts_as_a_long_term_condition() -> None:
    assert set(LTC_GROUPS) <= set(CATALOGUE.groups)
    assert CATALOGUE.ltc_groups >= set(LTC_GROUPS)
    for name in LTC_GROUPS:
        group = CATALOGUE.groups[name]
        assert group.ltc, name
        assert group.title and group.title != name, name
        assert group.snomed and group.icd10, name


@pytest.mark.parametrize(
    ("group", "code"),
    [(group, code) for group, codes in REQUIRED_SNOMED.items() for code in codes],
)
def test_required_snomed_code_maps_to_its_group(group: str, code: str) -> None:
    assert CATALOGUE.groups_for_code(SNOMED, code) == (group,)


@pytest.mark.parametrize(
    ("group", "category"),
    [(group, code) for group, codes in REQUIRED_ICD10.items() for code in codes]
    + [("cancer", code) for code in CANCER_CATEGORIES],
)
@pytest.mark.parametrize("system", ICD10_SYSTEMS)
def test_icd10_category_maps_to_its_group(group: str, category: str, system: str) -> None:
    assert CATALOGUE.groups_for_code(system, category) == (group,)


@pytest.mark.parametrize(
    ("code", "group"),
    [
        ("J44.9", "copd"), ("J44.1", "copd"), ("E11.65", "diabetes_type2"),
        ("E11.9", "diabetes_type2"), ("E10.9", "diabetes_type1"),
        ("I21.4", "coronary_heart_disease"), ("I50.0", "heart_failure"),
        ("N18.3", "ckd"), ("F32.1", "depression"), ("C50.9", "cancer"), ("G45.9", "stroke_tia"),
        ("j45.9", "asthma"), (" I10 ", "hypertension"), ("I48.91", "atrial_fibrillation"),
        ("F03.X", "dementia"), ("M17.0", "osteoarthritis"), ("F20.0", "serious_mental_illness"),
    ],
)
@pytest.mark.parametrize("system", ICD10_SYSTEMS)
def test_full_icd10_codes_map_by_their_three_character_category(
    code: str, group: str, system: str,
) -> None:
    assert CATALOGUE.groups_for_code(system, code) == (group,)


def test_codes_outside_the_value_sets_map_to_nothing() -> None:
    assert CATALOGUE.groups_for_code(SNOMED, "73211009") == ()  # diabetes, type not stated
    assert CATALOGUE.groups_for_code(SNOMED, "999999999") == ()
    assert CATALOGUE.groups_for_code(ICD10_SYSTEMS[0], "J18.9") == ()  # pneumonia
    assert CATALOGUE.groups_for_code("http://loinc.org", "44054006") == ()


def test_groups_do_not_share_codes() -> None:
    # One code, one group: a shared code would count twice in condition_count().
    for system, attribute in ((SNOMED, "snomed"), (ICD10_SYSTEMS[0], "icd10")):
        seen: dict[str, str] = {}
        for group in CATALOGUE.groups.values():
            for code in getattr(group, attribute):
                assert code not in seen, (system, code, seen.get(code), group.name)
                seen[code] = group.name


def test_the_two_diabetes_types_stay_separate() -> None:
    type1 = CATALOGUE.groups["diabetes_type1"]
    type2 = CATALOGUE.groups["diabetes_type2"]
    assert not type1.snomed & type2.snomed
    assert type1.icd10 == {"E10"} and type2.icd10 == {"E11"}
