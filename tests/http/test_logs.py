"""Structured logs: one JSON object per line, Cloud Logging's fields, the request's trace,
ids as fields, and never a secret or a signature."""
import json

from conftest import function_client
from support import INTERNAL_TOKEN, SERVER_KEY, insert_booking, notification


def entries(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_webhook_logs_json_lines_with_trace_and_ids(conn, app_env, assign_server, capfd):
    app_env(GOOGLE_CLOUD_PROJECT="demo-project", ASSIGN_MEETING_LINK_URL=assign_server.url)
    b = insert_booking(conn)
    body = notification(b["order_id"])
    capfd.readouterr()
    r = function_client("midtrans_webhook").post(
        "/", json=body, headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"})
    assert r.status_code == 200
    out, err = capfd.readouterr()
    logged = entries(err)
    recorded = [e for e in logged if e["message"] == "notification recorded"]
    assert recorded and recorded[0]["severity"] == "INFO"
    assert recorded[0]["order_id"] == b["order_id"] and recorded[0]["booking_id"] == b["id"]
    assert recorded[0]["logging.googleapis.com/trace"] == "projects/demo-project/traces/105445aa7843bc8bf206b12000100000"
    for secret in (SERVER_KEY, INTERNAL_TOKEN, body["signature_key"], body["signature_key"][:32]):
        assert secret not in out + err


def test_a_forged_signature_is_a_warning_without_the_signature(conn, app_env, capfd):
    app_env()
    b = insert_booking(conn)
    forged = dict(notification(b["order_id"]), signature_key="ab" * 64)
    capfd.readouterr()
    assert function_client("midtrans_webhook").post("/", json=forged).status_code == 401
    out, err = capfd.readouterr()
    warnings = [e for e in entries(err) if e["severity"] == "WARNING"]
    assert warnings and warnings[0]["error"] == "InvalidSignature"
    assert "ab" * 64 not in out + err


def test_other_libraries_log_in_the_same_json_format(capfd):
    """pg8000, google-auth and the connector log through `logging`: their warnings come out
    as the same Cloud Logging lines, named by logger; their debug chatter does not."""
    import logging

    from meeting_links import logs
    logs.setup()
    capfd.readouterr()
    logging.getLogger("google.auth.transport.requests").warning("refreshing credentials failed: %s", "timeout")
    logging.getLogger("pg8000.core").debug("noise")
    logged = entries(capfd.readouterr().err)
    assert [(e["severity"], e["message"], e["logger"]) for e in logged] == [
        ("WARNING", "refreshing credentials failed: timeout", "google.auth.transport.requests")]


def test_an_unexpected_error_is_logged_with_a_stack_trace_for_error_reporting(conn, app_env, monkeypatch, capfd):
    from meeting_links import notifications
    app_env()
    b = insert_booking(conn)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(notifications, "receive", broken)
    capfd.readouterr()
    r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
    assert r.status_code == 500 and r.get_json() == {"success": False, "error": "Internal error"}
    errors = [e for e in entries(capfd.readouterr().err) if e["severity"] == "ERROR"]
    assert errors[0]["message"] == "unexpected error" and errors[0]["error"] == "ZeroDivisionError"
    assert errors[0]["stack_trace"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: a bug" in errors[0]["stack_trace"]
