"""`mecc valuesets build`: value sets from published code lists, with every local change named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mecc.cli_valuesets import valuesets
from mecc.clinical.catalogue import SNOMED, load_catalogue
from mecc.clinical.terminology import TerminologyError, build, icd10_entry, markdown, render

ROOT = Path(__file__).resolve().parents[2]
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config folder with a small terminology pack of its own."""
    shutil.copyfile(ROOT / "config" / "facts.yaml", tmp_path / "facts.yaml")
    lists = tmp_path / "terminology"
    write(lists, "dm.csv", "code,term\n44054006,Type 2 diabetes mellitus\n"
                           "73211009,Diabetes mellitus\n315051004,Diabetes resolved\n")
    write(lists, "dmres.csv", "code,term\n315051004,Diabetes resolved\n")
    write(lists, "dm_icd.csv", "code,term\nE11,Type 2 diabetes\nE119,Type 2 without "
                               "complications\nH360,Diabetic retinopathy\nO244,Gestational\n")
    write(lists, "oa.csv", "code,term\n396275006,Osteoarthritis\n90560007,Gout\n"
                           "1162303002,Seronegative rheumatoid arthritis with erosion\n")
    write(lists, "drugs.csv", "type,id,bnf_code,nm\nvmp,325278007,0601022B0AAABAB,Metformin\n")
    write(lists, "MANIFEST.yaml", "lists:\n- file: dm.csv\n  codelist_id: org/dm_cod/20250627\n"
                                  "  publisher: NHS Digital PCD refset\n"
                                  "medication_lists:\n- file: drugs.csv\n"
                                  "  codelist_id: opensafely/antidiabetic-drugs/2020-07-16\n"
                                  "  publisher: OpenSAFELY\n")
    write(lists, "build.yaml", """\
groups:
  diabetes_any:
    title: Diabetes of any type
    snomed: [dm.csv]
    resolved: [dmres.csv]
    icd10: [dm_icd.csv]
    remove:
      - {system: icd10, codes: [O24.4], reason: Gestational diabetes is not diabetes now.}
    add:
      - {system: icd10, codes: [E08], reason: ICD-10-CM diabetes due to another condition.}
  osteoarthritis:
    title: Osteoarthritis
    ltc: true
    snomed: [oa.csv]
    only_terms: [{pattern: osteoarth|arthrosis, reason: Osteoarthritis only.}]
    exclude_terms: [{pattern: rheumatoid, reason: Its own group.}]
medicines:
  diabetes:
    title: Medicines for diabetes
    dmd: [drugs.csv]
""")
    return tmp_path


def test_icd10_codes_become_categories_or_subcategories() -> None:
    assert icd10_entry("E11") == "E11"
    assert icd10_entry("e11.9") == "E11.9"
    assert icd10_entry("E119") == "E11.9"
    assert icd10_entry("I4891") == "I48.9"  # deeper codes match at four characters
    assert icd10_entry("44054006") == ""


def test_a_build_takes_the_lists_and_the_named_changes(config: Path) -> None:
    result = build(config / "terminology")
    groups = {g.name: g for g in result.groups}
    dm = groups["diabetes_any"]
    # A resolved code is never also a diagnosis code of its group.
    assert dm.codes == {"snomed": {"44054006", "73211009"}, "resolved": {"315051004"},
                        "icd10": {"E08", "E11", "H36.0"}}  # E11.9 is inside E11
    assert dm.sources[0] == {"list": "org/dm_cod/20250627", "version": "20250627",
                             "publisher": "NHS Digital PCD refset",
                             "file": "terminology/dm.csv", "system": "snomed", "codes": 3}
    assert groups["osteoarthritis"].codes["snomed"] == {"396275006"}
    assert [c["reason"] for c in groups["osteoarthritis"].changes] == [
        "Osteoarthritis only.", "Its own group."]
    assert result.medicines[0].codes == {"dmd": {"325278007"}}
    assert result.notes == []


def test_the_built_file_loads_and_matches_by_category_and_subcategory(config: Path) -> None:
    (config / "valuesets.yaml").write_text(render(build(config / "terminology")))
    catalogue = load_catalogue(config)
    assert catalogue.groups_for_code(ICD10_CM, "E11.65") == ("diabetes_any",)
    assert catalogue.groups_for_code(ICD10_CM, "H36.0") == ("diabetes_any",)
    assert catalogue.groups_for_code(ICD10_CM, "H36.8") == ()
    assert catalogue.groups_for_code(ICD10_CM, "O24.4") == ()
    assert catalogue.groups_resolved_by(SNOMED, "315051004") == ("diabetes_any",)
    assert catalogue.medicine_classes_for_code(SNOMED, "325278007") == ("diabetes",)
    assert catalogue.ltc_groups == {"osteoarthritis"}


def test_the_docs_tables_name_sources_versions_and_counts(config: Path) -> None:
    text = markdown(build(config / "terminology"))
    assert "| `diabetes_any` | 2 | 3 | 1 | org/dm_cod/20250627: 3;" in text
    assert "| `diabetes` | 1 | opensafely/antidiabetic-drugs/2020-07-16: 1 |" in text


@pytest.mark.parametrize(("recipe", "message"), [
    ("groups:\n  g:\n    snomed: [nowhere.csv]\n", "no such list 'nowhere.csv'"),
    ("groups:\n  g:\n    remove: [{system: snomed, codes: ['1234567']}]\n", "say why"),
    ("groups:\n  g:\n    add: [{system: loinc, codes: ['1'], reason: x}]\n", "'system'"),
    ("groups:\n  g:\n    add: [{system: snomed, codes: ['E11'], reason: x}]\n", "not snomed"),
    ("groups:\n  g:\n    icd10: [oa.csv]\n", "is not an ICD-10 code"),
    ("groups:\n  g:\n    snomed: [dm_icd.csv]\n", "is not a SNOMED CT"),
    ("groups:\n  g:\n    loinc: [dm.csv]\n", "unknown keys ['loinc']"),
    ("groups:\n  g:\n    only_terms: [{pattern: '(', reason: x}]\n", "bad pattern"),
    ("group: {}\n", "expected a mapping with 'groups'"),
])
def test_a_broken_recipe_names_the_entry(config: Path, recipe: str, message: str) -> None:
    write(config / "terminology", "build.yaml", recipe)
    with pytest.raises(TerminologyError) as caught:
        build(config / "terminology")
    assert "build.yaml" in str(caught.value) and message in str(caught.value)


def test_a_removal_that_matches_nothing_is_noted(config: Path) -> None:
    write(config / "terminology", "build.yaml", "groups:\n  g:\n    snomed: [dm.csv]\n"
          "    remove: [{system: snomed, codes: ['1234567'], reason: a refreshed list}]\n")
    assert build(config / "terminology").notes == [
        "g: removal of ['1234567'] matched nothing (the list changed?)"]


def test_the_command_builds_checks_and_refuses_a_stale_file(config: Path) -> None:
    runner = CliRunner()
    stale = runner.invoke(valuesets, ["build", "--config", str(config), "--check"])
    assert stale.exit_code == 1 and "out of date" in stale.output
    built = runner.invoke(valuesets, ["build", "--config", str(config), "--docs"])
    assert built.exit_code == 0, built.output
    assert "2 groups" in built.output and "| `osteoarthritis` |" in built.output
    fresh = runner.invoke(valuesets, ["build", "--config", str(config), "--check"])
    assert fresh.exit_code == 0 and "up to date" in fresh.output


def test_a_build_that_would_not_load_keeps_the_old_file(config: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(valuesets, ["build", "--config", str(config)]).exit_code == 0
    before = (config / "valuesets.yaml").read_text()
    write(config / "terminology", "build.yaml",
          "groups:\n  g:\n    snomed: [dm.csv]\n    implies: {efi_category: very}\n")
    result = runner.invoke(valuesets, ["build", "--config", str(config)])
    assert result.exit_code == 1 and "do not load" in result.output
    assert (config / "valuesets.yaml").read_text() == before
