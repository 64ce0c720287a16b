"""The fact catalogue and value sets: loading config/, and broken files named precisely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mecc.clinical.catalogue import CODE_SYSTEMS, SNOMED, CatalogueError, load_catalogue

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
ICD10, ICD10_UK = "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of config/ to break."""
    for name in ("facts.yaml", "valuesets.yaml"):
        shutil.copyfile(CONFIG / name, tmp_path / name)
    return tmp_path


def add_fact(config: Path, entry: str) -> Path:
    path = config / "facts.yaml"
    path.write_text(path.read_text().replace("facts:\n", "facts:\n" + entry, 1))
    return path


def add_group(config: Path, entry: str) -> Path:
    path = config / "valuesets.yaml"
    path.write_text(path.read_text().replace("groups:\n", "groups:\n" + entry, 1))
    return path


# ------------------------------------------------------------------------------ the shipped config
def test_the_shipped_catalogue_loads_with_the_contract_facts() -> None:
    catalogue = load_catalogue(CONFIG)
    facts = catalogue.facts
    assert facts["smoking_status"].values == ("current", "ex", "never", "unknown")
    assert (facts["audit_c"].type, facts["audit_c"].min, facts["audit_c"].max) == ("int", 0, 12)
    assert (facts["bmi"].type, facts["bmi"].min, facts["bmi"].max) == ("double", 10, 100)
    assert (facts["activity_minutes_per_week"].min,
            facts["activity_minutes_per_week"].max) == (0, 10080)
    assert facts["gppaq"].values == ("active", "moderately_active", "moderately_inactive",
                                     "inactive")
    for name, lo, hi in [("audit", 0, 40), ("phq2", 0, 6), ("gad2", 0, 6),
                         ("hba1c_mmol_mol", 10, 200), ("systolic_bp", 50, 300),
                         ("diastolic_bp", 20, 200), ("ucla3", 3, 9)]:
        assert (facts[name].min, facts[name].max) == (lo, hi), name
    assert facts["efi_category"].values == ("fit", "mild", "moderate", "severe")
    assert {n for n, f in facts.items() if f.type == "bool"} == {
        "is_carer", "financial_concern", "lives_alone"}
    assert not facts["age"].is_sent and facts["age"].type == "int"
    assert "age" not in catalogue.sent_facts


def test_the_shipped_value_sets_have_the_contract_groups() -> None:
    groups = load_catalogue(CONFIG).groups
    assert {"diabetes_type2", "copd", "asthma", "heart_failure", "coronary_heart_disease",
            "hypertension", "stroke_tia", "ckd", "depression", "anxiety", "dementia", "cancer",
            "osteoarthritis", "serious_mental_illness"} <= set(groups)


@pytest.mark.parametrize(("system", "code", "groups"), [
    (SNOMED, "44054006", ("diabetes_any", "diabetes_type2")),
    (SNOMED, " 44054006 ", ("diabetes_any", "diabetes_type2")),
    (SNOMED, "13645005", ("copd",)),
    (ICD10, "E11", ("diabetes_any", "diabetes_type2")),
    (ICD10, "E11.9", ("diabetes_any", "diabetes_type2")),
    (ICD10_CM, "E11.9", ("diabetes_any", "diabetes_type2")),
    (ICD10_CM, "I10", ("hypertension",)),
    (ICD10, "I11.0", ("heart_failure", "hypertension")),  # a subcategory, and its category
    (ICD10, "I11.9", ("hypertension",)),
    (ICD10, "O24.1", ("diabetes_any",)),
    (ICD10, "O24.4", ()),  # diabetes arising in pregnancy: not in the diabetes groups
    (ICD10_UK, "J44.9", ("copd",)),
    (ICD10_UK, "J449", ("copd",)),
    (ICD10_UK, "j44.1", ("copd",)),
    (ICD10, "J43.2", ("copd",)),
    (ICD10, "Z99.9", ()),
    (SNOMED, "999999999", ()),
    (SNOMED, "E11", ()),
    ("http://loinc.org", "E11", ()),
])
def test_codes_map_to_groups(system: str, code: str, groups: tuple[str, ...]) -> None:
    assert load_catalogue(CONFIG).groups_for_code(system, code) == groups


def test_every_code_system_is_known() -> None:
    assert set(CODE_SYSTEMS) == {SNOMED, ICD10, ICD10_UK, ICD10_CM}


def test_ltc_groups() -> None:
    catalogue = load_catalogue(CONFIG)
    assert {"diabetes_type2", "copd"} <= catalogue.ltc_groups


def test_a_new_fact_and_group_need_no_code_change(config: Path) -> None:
    add_fact(config, "  steps_per_day:\n    type: int\n    min: 0\n    max: 100000\n")
    add_group(config, "  gout:\n    title: Gout\n    snomed: ['90560007']\n    icd10: [M10]\n")
    catalogue = load_catalogue(config)
    assert catalogue.sent_facts["steps_per_day"].max == 100000
    assert catalogue.groups_for_code(ICD10_UK, "M10.9") == ("gout",)
    assert catalogue.groups_for_code(SNOMED, "90560007") == ("gout",)


# ------------------------------------------------------------------------------ broken facts
@pytest.mark.parametrize(("entry", "message"), [
    ("  broken:\n    type: integer\n", "'type' must be one of int, double, string, bool"),
    ("  broken:\n    type: int\n    min: 10\n    max: 1\n", "'min' is greater than 'max'"),
    ("  broken:\n    type: int\n    maximum: 10\n", "unknown keys ['maximum']"),
    ("  broken:\n    type: int\n    min: 'zero'\n", "'min' must be a number"),
    ("  broken:\n    type: string\n    min: 1\n", "apply to int and double facts only"),
    ("  broken:\n    type: int\n    values: [a]\n", "for string facts only"),
    ("  broken:\n    type: string\n    values: [1, 2]\n", "must all be strings"),
    ("  broken:\n    type: string\n    values: []\n", "non-empty list"),
    ("  broken:\n    type: bool\n    source: sensor\n", "'source' must be"),
    ("  broken: 12\n", "expected a mapping"),
])
def test_a_broken_fact_names_the_file_and_the_entry(config: Path, entry: str,
                                                    message: str) -> None:
    path = add_fact(config, entry)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(config)
    text = str(caught.value)
    assert str(path) in text
    assert "facts.broken" in text
    assert message in text


def test_a_badly_named_fact_is_named(config: Path) -> None:
    add_fact(config, "  Bad-Name:\n    type: int\n")
    with pytest.raises(CatalogueError, match=r"facts\.Bad-Name: fact names are lower-case"):
        load_catalogue(config)


def test_bad_yaml_names_the_file(config: Path) -> None:
    path = config / "facts.yaml"
    path.write_text("facts:\n  bmi: [unclosed\n")
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(config)
    assert str(caught.value).startswith(f"{path}: not valid YAML")


def test_a_facts_file_without_facts_is_refused(config: Path) -> None:
    path = config / "facts.yaml"
    path.write_text("fact:\n  bmi: {type: double}\n")
    with pytest.raises(CatalogueError, match="expected a mapping with a 'facts' mapping"):
        load_catalogue(config)
    path.write_text("")
    with pytest.raises(CatalogueError, match=str(path)):
        load_catalogue(config)


def test_a_missing_file_is_named(config: Path) -> None:
    (config / "valuesets.yaml").unlink()
    with pytest.raises(CatalogueError, match=r"valuesets\.yaml: cannot read"):
        load_catalogue(config)


# ------------------------------------------------------------------------------ broken value sets
@pytest.mark.parametrize(("entry", "message"), [
    ("  broken:\n    snomed: ['E11']\n", "SNOMED CT codes are digits"),
    ("  broken:\n    icd10: [E11.95]\n", "three-character categories"),
    ("  broken:\n    icd10: [E1]\n", "three-character categories"),
    ("  broken:\n    includes: [nowhere]\n", "unknown groups ['nowhere']"),
    ("  broken:\n    implies: {efi_category: very}\n", "not one of its values"),
    ("  broken:\n    implies: {age: 3}\n", "not a sent fact"),
    ("  broken:\n    icd10: {E11: 1}\n", "must be a list of codes"),
    ("  broken:\n    loinc: ['1234-5']\n", "unknown keys ['loinc']"),
    ("  broken: [E11]\n", "expected a mapping"),
])
def test_a_broken_group_names_the_file_and_the_entry(config: Path, entry: str,
                                                     message: str) -> None:
    path = add_group(config, entry)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(config)
    text = str(caught.value)
    assert str(path) in text and "groups.broken" in text and message in text
