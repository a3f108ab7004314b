"""docs/openapi.json stays true: every response the real functions give, in every case the
tests can provoke, has a documented status and a body that validates against its schema."""
import json
from pathlib import Path

import requests
from jsonschema import Draft202012Validator

from support import INTERNAL_TOKEN, insert_booking, notification

DOC = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def check(path, response):
    responses = DOC["paths"][path]["post"]["responses"]
    assert str(response.status_code) in responses, f"{path} answered undocumented {response.status_code}"
    documented = responses[str(response.status_code)]
    schema = dict(documented["content"]["application/json"]["schema"])
    schema["components"] = DOC["components"]  # so "#/components/..." resolves
    Draft202012Validator(schema).validate(response.json())
    for header in documented.get("headers", {}):
        assert header in response.headers


def test_the_document_is_valid_json_schema_where_it_holds_schemas():
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_link_event_type_has_an_example_that_matches_its_schema():
    body = DOC["webhooks"]["linkEvent"]["post"]["requestBody"]["content"]["application/json"]
    schema = Draft202012Validator({**DOC["components"]["schemas"]["LinkEvent"], "components": DOC["components"]})
    types = DOC["components"]["schemas"]["LinkEvent"]["properties"]["type"]["enum"]
    assert sorted(e["value"]["type"] for e in body["examples"].values()) == sorted(types)
    for example in body["examples"].values():
        schema.validate(example["value"])
    # the types the database may write (link_events_type_check) are the documented ones
    check = (Path(__file__).parents[2] / "sql" / "0013_link_events_v2.sql").read_text()
    assert all(f"'{t}'" in check for t in types)


def test_assign_responses_match_the_document(conn, assign_server, set_links):
    set_links(1)
    first, second = (insert_booking(conn, payment_status="paid", status="confirmed") for _ in range(2))
    calls = [
        lambda: assign_server.post({"bookingId": first["id"]}, headers=AUTH),            # 200
        lambda: assign_server.post({"bookingId": first["id"]}, headers=AUTH),            # 200 alreadyAssigned
        lambda: assign_server.post({"bookingId": second["id"]}, headers=AUTH),           # 409 exhausted
        lambda: assign_server.post({"bookingId": insert_booking(conn)["id"]}, headers=AUTH),  # 409 not paid
        lambda: assign_server.post({"sweep": True}, headers=AUTH),                       # 200 sweep
        lambda: assign_server.post({"bookingId": "00000000-0000-4000-8000-000000000000"}, headers=AUTH),  # 404
        lambda: assign_server.post({"bookingId": "x"}, headers=AUTH),                    # 400
        lambda: assign_server.post({"bookingId": first["id"]}),                          # 401
        lambda: requests.get(assign_server.url, timeout=10),                             # 405
        lambda: requests.post(assign_server.url, data=b"{" * 70000, headers=AUTH, timeout=10),  # 413
    ]
    statuses = []
    for call in calls:
        response = call()
        check("/assign_meeting_link", response)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 409, 409, 200, 404, 400, 401, 405, 413]


def test_webhook_responses_match_the_document(conn, webhook_server, set_links):
    set_links(1)
    a, b = insert_booking(conn), insert_booking(conn)
    forged = dict(notification(a["order_id"]), signature_key="0" * 128)
    unsigned = {k: v for k, v in notification(a["order_id"]).items() if k != "transaction_status"}
    calls = [
        lambda: webhook_server.post(notification(a["order_id"])),                    # 200 applied, link
        lambda: webhook_server.post(notification(a["order_id"])),                    # 200 duplicate
        lambda: webhook_server.post(notification(b["order_id"])),                    # 200 exhausted
        lambda: webhook_server.post(notification("UNKNOWN-ORDER")),                  # 200 ignored
        lambda: webhook_server.post(notification(b["order_id"], amount="1.00")),     # 400 amount
        lambda: webhook_server.post(unsigned),                                       # 400 missing field
        lambda: webhook_server.post(forged),                                         # 401
        lambda: requests.get(webhook_server.url, timeout=10),                        # 405
        lambda: requests.post(webhook_server.url, data=b" " * 70000, timeout=10),    # 413
    ]
    statuses = []
    for call in calls:
        response = call()
        check("/midtrans_webhook", response)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 400, 400, 401, 405, 413]


def test_transient_failures_match_the_document(app_env):
    from conftest import function_client
    app_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")

    class Response:  # the Flask test client's answer, seen through the requests-like interface check() uses
        def __init__(self, r):
            self.status_code, self.headers, self._json = r.status_code, r.headers, r.get_json()

        def json(self):
            return self._json

    r = Response(function_client("assign_meeting_link").post(
        "/", json={"bookingId": "00000000-0000-4000-8000-000000000000"}, headers=AUTH))
    check("/assign_meeting_link", r)
    assert r.status_code == 503
    r = Response(function_client("midtrans_webhook").post("/", json=notification("X")))
    check("/midtrans_webhook", r)
    assert r.status_code == 503
