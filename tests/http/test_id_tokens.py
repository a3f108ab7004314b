"""Function-to-function authentication the way it runs on Google Cloud: no shared token,
the webhook fetches a Google ID token for the assign function's URL from the metadata
server (here a local fake speaking the metadata protocol), and the private assign function
trusts Cloud Run's IAM check."""
import base64
import json
import time
from urllib.parse import parse_qs, urlparse

import pytest

from support import SERVER_KEY, FakeServer, FunctionServer, booking, insert_booking, notification, running

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def metadata_handler(method, path, headers, body):
    if headers.get("Metadata-Flavor") != "Google":
        return 403, {"error": "missing Metadata-Flavor"}, {}
    url = urlparse(path)
    if url.path == "/":
        return 200, b"ok", {"Metadata-Flavor": "Google"}
    if url.path == "/computeMetadata/v1/instance/service-accounts/default/":
        return 200, {"aliases": ["default"], "email": "webhook@project.iam.gserviceaccount.com",
                     "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}, {
            "Metadata-Flavor": "Google", "Content-Type": "application/json"}
    if url.path == "/computeMetadata/v1/instance/service-accounts/default/identity":
        audience = parse_qs(url.query)["audience"][0]
        now = int(time.time())
        token = ".".join([_b64({"alg": "RS256", "typ": "JWT"}),
                          _b64({"aud": audience, "iss": "https://accounts.google.com", "iat": now,
                                "exp": now + 3600, "email": "webhook@project.iam.gserviceaccount.com"}),
                          "c2lnbmF0dXJl"])
        return 200, token.encode(), {"Metadata-Flavor": "Google", "Content-Type": "text/plain"}
    return 404, {"error": "not found"}, {}


def test_webhook_presents_an_id_token_for_the_assign_url(conn, database_url):
    with FakeServer(metadata_handler) as metadata:
        assign = FunctionServer("assign_meeting_link", {
            "DATABASE_URL": database_url, "TRUST_CLOUD_RUN_IAM": "true", "K_SERVICE": "assign-meeting-link"})
        with running(assign):
            webhook = FunctionServer("midtrans_webhook", {
                "DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                "ASSIGN_MEETING_LINK_URL": assign.url, "INTERNAL_API_TOKEN": "",
                "GCE_METADATA_HOST": f"127.0.0.1:{metadata.port}",
                "GCE_METADATA_IP": f"127.0.0.1:{metadata.port}"})
            with running(webhook):
                first, second = insert_booking(conn), insert_booking(conn)
                r1 = webhook.post(notification(first["order_id"]))
                r2 = webhook.post(notification(second["order_id"]))
        identity = [r for r in metadata.requests if "identity" in r["path"]]
    assert r1.status_code == 200 and r1.json()["meetingLink"], r1.text
    assert r2.status_code == 200 and r2.json()["meetingLink"]
    assert booking(conn, first["id"])["link_id"] and booking(conn, second["id"])["link_id"]
    assert parse_qs(urlparse(identity[0]["path"]).query)["audience"] == [assign.url]
    # The token is cached until it nears expiry: one fetch served both notifications.
    assert len(identity) == 1


def test_without_a_token_source_the_webhook_answers_503_and_keeps_the_payment(conn, database_url):
    webhook = FunctionServer("midtrans_webhook", {
        "DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY,
        "ASSIGN_MEETING_LINK_URL": "http://127.0.0.1:9/", "INTERNAL_API_TOKEN": "",
        "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
        "GCE_METADATA_TIMEOUT": "1", "GCE_METADATA_DETECT_RETRIES": "1",
        "GOOGLE_APPLICATION_CREDENTIALS": ""})
    with running(webhook):
        b = insert_booking(conn)
        r = webhook.post(notification(b["order_id"]))
    assert r.status_code == 503
    assert booking(conn, b["id"])["payment_status"] == "paid"
