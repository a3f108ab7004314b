"""assign_meeting_link as a real HTTP server (gunicorn via functions-framework) and through
functions_framework.create_app."""
import sys
from pathlib import Path

import pytest
import requests

from conftest import function_client
from support import INTERNAL_TOKEN, REPO, FunctionServer, booking, insert_booking, paid, running

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def test_assigns_a_link_and_answers_the_seed_shape(conn, assign_server):
    b = paid(conn)
    r = assign_server.post({"bookingId": b["id"]}, headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"success": True, "meetingLink": "https://meet.google.com/kcw-ebey-pqu",
                        "meetingLinkId": booking(conn, b["id"])["link_id"], "source": "pool"}
    again = assign_server.post({"bookingId": b["id"]}, headers=AUTH)
    assert again.status_code == 200 and again.json()["alreadyAssigned"] is True
    assert again.json()["meetingLinkId"] == r.json()["meetingLinkId"]


def test_exhausted_pool_answers_409_and_marks_the_booking(conn, assign_server):
    for _ in range(3):
        assert assign_server.post({"bookingId": paid(conn)["id"]}, headers=AUTH).status_code == 200
    fourth = paid(conn)
    r = assign_server.post({"bookingId": fourth["id"]}, headers=AUTH)
    assert r.status_code == 409
    assert r.json() == {"success": False,
                        "error": "No available meeting links at this time. Please contact support.",
                        "requiresManualAssignment": True}
    assert booking(conn, fourth["id"])["needs_manual_link"] is True
    errors = [e for e in assign_server.log_entries()
              if e.get("severity") == "ERROR" and e.get("booking_id") == fourth["id"]]
    assert errors and errors[0]["starts_at"].startswith("2030-01-07T07:00")


@pytest.mark.parametrize("body,status", [
    ({"bookingId": "00000000-0000-4000-8000-000000000000"}, 404),
    ({"bookingId": "not-a-uuid"}, 400),
    ({"bookingId": "'; DROP TABLE bookings; --"}, 400),
    ({"bookingId": 42}, 400),
    ({}, 400),
    ([1, 2], 400),
])
def test_bad_requests_get_clear_errors(conn, assign_server, body, status):
    r = assign_server.post(body, headers=AUTH)
    assert r.status_code == status
    assert r.json()["success"] is False and r.json()["error"]


def test_malformed_json_and_other_methods(assign_server):
    r = requests.post(assign_server.url, data="{not json", headers=AUTH, timeout=10)
    assert (r.status_code, r.json()["success"]) == (400, False)
    r = requests.get(assign_server.url, headers=AUTH, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "POST" and r.json()["success"] is False
    r = requests.post(assign_server.url, data=b"x" * (70 * 1024), headers=AUTH, timeout=10)
    assert r.status_code == 413


def test_unpaid_booking_is_409_and_gets_nothing(conn, assign_server):
    b = insert_booking(conn)
    r = assign_server.post({"bookingId": b["id"]}, headers=AUTH)
    assert r.status_code == 409 and "not paid" in r.json()["error"]
    assert booking(conn, b["id"])["link_id"] is None


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": INTERNAL_TOKEN}, {"Authorization": "Basic " + INTERNAL_TOKEN}])
def test_without_valid_credentials_nothing_is_assigned(conn, assign_server, headers):
    b = paid(conn)
    r = assign_server.post({"bookingId": b["id"]}, headers=headers)
    assert r.status_code == 401 and r.json()["success"] is False
    assert booking(conn, b["id"])["link_id"] is None


def test_with_no_authentication_configured_it_refuses_everyone(conn, app_env):
    app_env(INTERNAL_API_TOKEN=None)
    client = function_client("assign_meeting_link")
    b = paid(conn)
    for headers in ({}, {"Authorization": "Bearer anything"}):
        r = client.post("/", json={"bookingId": b["id"]}, headers=headers)
        assert r.status_code == 401
    assert booking(conn, b["id"])["link_id"] is None


def test_trusting_cloud_run_iam_needs_cloud_run_and_a_bearer(conn, app_env):
    b = paid(conn)
    app_env(INTERNAL_API_TOKEN=None, TRUST_CLOUD_RUN_IAM="true")  # not on Cloud Run: no K_SERVICE
    assert function_client("assign_meeting_link").post(
        "/", json={"bookingId": b["id"]}, headers={"Authorization": "Bearer x"}).status_code == 401
    app_env(INTERNAL_API_TOKEN=None, TRUST_CLOUD_RUN_IAM="true", K_SERVICE="assign-meeting-link")
    client = function_client("assign_meeting_link")
    assert client.post("/", json={"bookingId": b["id"]}).status_code == 401
    r = client.post("/", json={"bookingId": b["id"]},
                    headers={"Authorization": "Bearer header.payload.SIGNATURE_REMOVED_BY_GOOGLE"})
    assert r.status_code == 200 and r.get_json()["meetingLink"]


def test_create_app_serves_the_same_contract(conn, app_env):
    app_env()
    client = function_client("assign_meeting_link")
    b = paid(conn)
    r = client.post("/", json={"bookingId": b["id"]}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["success"] is True
    assert client.put("/", json={}, headers=AUTH).status_code == 405


def test_database_down_is_503(conn, app_env):
    app_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
    r = function_client("assign_meeting_link").post("/", json={"bookingId": paid(conn)["id"]}, headers=AUTH)
    assert r.status_code == 503 and r.headers["Retry-After"] and r.get_json()["success"] is False


def test_served_from_the_repo_root_with_the_readme_command(conn, database_url):
    server = FunctionServer("assign_meeting_link", {"DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN},
                            command=[str(Path(sys.executable).parent / "functions-framework"), "--source", "functions/assign_meeting_link/main.py",
                                     "--target", "assign_meeting_link"], cwd=REPO)
    with running(server):
        r = server.post({"bookingId": paid(conn)["id"]}, headers=AUTH)
        assert r.status_code == 200


def test_function_recovers_after_its_connections_are_terminated(conn, assign_server):
    auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    b1 = insert_booking(conn, payment_status="paid", status="confirmed")
    assert assign_server.post({"bookingId": b1["id"]}, headers=auth).status_code == 200
    conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'meeting-links'"
             " AND datname = current_database() AND pid <> pg_backend_pid()")
    b2 = insert_booking(conn, payment_status="paid", status="confirmed")
    assert assign_server.post({"bookingId": b2["id"]}, headers=auth).status_code == 200
