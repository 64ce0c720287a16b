"""Words a nurse reads in two seconds: how the staff screen names topics, priorities, settings
and the readings a prompt rests on. Plain data; the screen's script formats with it.

Anything missing here still shows (its code with spaces for underscores), so a topic or fact
added to config never breaks the screen; tests/unit/test_wording.py keeps the built-in ones
covered.
"""

from __future__ import annotations

from typing import Any

from mecc.clinical.directory import SERVICE_TYPE_NAMES

TOPICS = {
    "smoking": "Smoking",
    "alcohol": "Alcohol",
    "physical_activity": "Physical activity",
    "healthy_weight": "Healthy weight",
    "mental_wellbeing": "Mental wellbeing",
    "diabetes_prevention": "Diabetes prevention",
    "blood_pressure": "Blood pressure",
    "self_management": "Self-management",
    "rehabilitation": "Rehabilitation",
    "frailty_falls": "Frailty and falls",
    "carers": "Carers",
    "care_planning": "Care and support planning",
    "social_connection": "Loneliness and isolation",
    "money_advice": "Money worries",
}

# The rule's indicator, said as a priority (never "Info" / "Warning").
PRIORITIES = {"critical": "Urgent", "warning": "Important", "info": "Routine"}

SETTINGS = {
    "general_practice": "General practice",
    "community_pharmacy": "Community pharmacy",
    "community_nursing": "Community nursing",
    "hospital_outpatient": "Hospital outpatients",
    "hospital_inpatient": "Hospital ward",
    "emergency_department": "Emergency department",
    "mental_health": "Mental health service",
    "social_care": "Social care",
    "dental": "Dental practice",
    "optometry": "Optometry",
    "voluntary_sector": "Voluntary sector",
    "other": "Other setting",
}

CONTACT_TYPES = {
    "appointment": "appointment",
    "home_visit": "home visit",
    "telephone": "telephone call",
    "video": "video call",
    "assessment": "assessment",
    "review": "review",
    "dispensing": "dispensing",
    "admission": "admission",
    "discharge": "discharge",
    "other": "contact",
}

SEXES = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Sex not known"}

OUTCOME_LABELS = {
    "conversation_had": "Conversation had",
    "referred": "Referred",
    "declined": "Declined by the person",
    "not_now": "Not now",
    "not_appropriate": "Not appropriate",
}

# How each reading a rule can rest on is said: "score" reads "PHQ-2 of 4", "measure" reads
# "BMI 32.1" (with its unit), "choice" and "flag" say the value in words. Facts about the
# person or the contact themselves (age, sex, setting ...) are on the contact's header, not
# repeated as readings.
FACTS: dict[str, dict[str, Any]] = {
    "phq2": {"label": "PHQ-2", "style": "score"},
    "gad2": {"label": "GAD-2", "style": "score"},
    "phq9": {"label": "PHQ-9", "style": "score"},
    "gad7": {"label": "GAD-7", "style": "score"},
    "audit_c": {"label": "AUDIT-C", "style": "score"},
    "audit": {"label": "AUDIT", "style": "score"},
    "ucla3": {"label": "Loneliness (UCLA-3)", "style": "score"},
    "bmi": {"label": "BMI", "style": "measure"},
    "hba1c_mmol_mol": {"label": "HbA1c", "style": "measure", "unit": "mmol/mol"},
    "systolic_bp": {"label": "Systolic BP", "style": "measure", "unit": "mmHg"},
    "diastolic_bp": {"label": "Diastolic BP", "style": "measure", "unit": "mmHg"},
    "activity_minutes_per_week": {"label": "Active", "style": "measure",
                                  "unit": "min a week"},
    "smoking_status": {"style": "choice", "values": {
        "current": "Current smoker", "ex": "Ex-smoker", "never": "Never smoked",
        "unknown": "Smoking not known"}},
    "gppaq": {"style": "choice", "values": {
        "active": "Active (GPPAQ)", "moderately_active": "Moderately active (GPPAQ)",
        "moderately_inactive": "Moderately inactive (GPPAQ)", "inactive": "Inactive (GPPAQ)"}},
    "efi_category": {"style": "choice", "values": {
        "fit": "Fit (eFI)", "mild": "Mild frailty (eFI)", "moderate": "Moderate frailty (eFI)",
        "severe": "Severe frailty (eFI)"}},
    "is_carer": {"style": "flag", "values": {"true": "Is a carer", "false": "Not a carer"}},
    "financial_concern": {"style": "flag", "values": {"true": "Money worries",
                                                      "false": "No money worries"}},
    "lives_alone": {"style": "flag", "values": {"true": "Lives alone",
                                                "false": "Does not live alone"}},
}
# Shown on the contact's header instead (or not at all).
NOT_READINGS = ("age", "sex", "ethnicity_group", "postcode_district", "setting", "contact_type",
                "staff_role")


def screen_wording() -> dict[str, Any]:
    """Everything the screen's script needs to put prompts into words (JSON)."""
    return {"topics": TOPICS, "priorities": PRIORITIES, "settings": SETTINGS,
            "contact_types": CONTACT_TYPES, "sexes": SEXES, "outcomes": OUTCOME_LABELS,
            "facts": FACTS, "not_readings": list(NOT_READINGS),
            "service_types": SERVICE_TYPE_NAMES}
