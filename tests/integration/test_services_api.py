"""The services directory API: list, add, read, replace and remove local services."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mecc.store.models import AuditEntry
from tests.support.factories import PROBLEM_JSON, auth_header

URL = "/api/v1/services"
SERVICE = {
    "id": "camden-stop-smoking",
    "name": "Camden Stop Smoking Service",
    "service_type": "stop_smoking",
    "areas": ["NW1", "NW5"],
    "self_referral": True,
    "contact": {"phone": "020 7000 0000"},
}


def test_a_service_is_added_read_replaced_and_removed(app: Any, client: Any,
                                                      make_key: Any) -> None:
    admin = auth_header(make_key(scopes=("admin",)))
    created = client.post(URL, json=SERVICE, headers=admin)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["name"] == SERVICE["name"]

    listed = client.get(URL, headers=admin).get_json()
    assert [item["id"] for item in listed["items"]] == [SERVICE["id"]]
    assert client.get(f"{URL}/{SERVICE['id']}", headers=admin).get_json()["areas"] == [
        "NW1", "NW5"]

    renamed = {key: value for key, value in SERVICE.items() if key != "id"}
    renamed["name"] = "Camden Smokefree"
    replaced = client.put(f"{URL}/{SERVICE['id']}", json=renamed, headers=admin)
    assert replaced.status_code == 200, replaced.get_json()
    assert client.get(f"{URL}/{SERVICE['id']}", headers=admin).get_json()["name"] == (
        "Camden Smokefree")

    assert client.delete(f"{URL}/{SERVICE['id']}", headers=admin).status_code == 204
    gone = client.get(f"{URL}/{SERVICE['id']}", headers=admin)
    assert gone.status_code == 404 and gone.mimetype == PROBLEM_JSON
    with app.extensions["mecc"].db.session() as session:
        actions = list(session.scalars(
            select(AuditEntry.action).where(AuditEntry.entity == "service",
                                            AuditEntry.entity_key == SERVICE["id"])
            .order_by(AuditEntry.id)))
    assert actions == ["upserted", "upserted", "deleted"]


def test_adding_a_taken_id_is_a_conflict(client: Any, make_key: Any) -> None:
    admin = auth_header(make_key(scopes=("admin",)))
    assert client.post(URL, json=SERVICE, headers=admin).status_code == 201
    again = client.post(URL, json=SERVICE, headers=admin)
    assert again.status_code == 409 and again.mimetype == PROBLEM_JSON


def test_replacing_or_removing_an_unknown_service_is_404(client: Any, make_key: Any) -> None:
    admin = auth_header(make_key(scopes=("admin",)))
    body = {key: value for key, value in SERVICE.items() if key != "id"}
    assert client.put(f"{URL}/nowhere", json=body, headers=admin).status_code == 404
    assert client.delete(f"{URL}/nowhere", headers=admin).status_code == 404


def test_an_id_in_the_body_must_match_the_url(client: Any, make_key: Any) -> None:
    admin = auth_header(make_key(scopes=("admin",)))
    assert client.post(URL, json=SERVICE, headers=admin).status_code == 201
    response = client.put(f"{URL}/{SERVICE['id']}", json={**SERVICE, "id": "elsewhere"},
                          headers=admin)
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"id": [f"Must be '{SERVICE['id']}'."]}


def test_only_admin_keys_change_the_directory(client: Any, make_key: Any) -> None:
    reader = auth_header(make_key())
    assert client.get(URL, headers=reader).status_code == 200
    assert client.post(URL, json=SERVICE, headers=reader).status_code == 403
