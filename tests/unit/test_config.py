"""Configuration from the environment, and the choice of database connector."""
import pytest

from meeting_links import config
from meeting_links.db.connect import connector_for
from meeting_links.errors import ConfigurationError


def test_defaults():
    s = config.from_environment({})
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/meeting_links"
    assert s.db_pool_size == 4 and s.meet_access_type == "AUTO" and s.link_events_timeout_s == 15
    assert s.midtrans_api == "https://api.sandbox.midtrans.com"
    assert not s.trust_cloud_run_iam and not s.running_on_cloud_run


def test_overrides_and_derived_values():
    s = config.from_environment({"MIDTRANS_IS_PRODUCTION": "true", "DB_POOL_SIZE": "10",
                                 "K_SERVICE": "svc", "DB_IAM_AUTH": "yes", "DB_IP_TYPE": "PRIVATE"})
    assert s.midtrans_api == "https://api.midtrans.com"
    assert (s.db_pool_size, s.running_on_cloud_run, s.db_iam_auth, s.db_ip_type) == (10, True, True, "private")
    assert config.from_environment({"MIDTRANS_API_BASE_URL": "http://127.0.0.1:9/"}).midtrans_api == "http://127.0.0.1:9"


@pytest.mark.parametrize("env", [{"DB_POOL_SIZE": "0"}, {"DB_POOL_SIZE": "many"}, {"TRUST_CLOUD_RUN_IAM": "maybe"},
                                 {"SWEEP_TIME_BUDGET_S": "-1"}, {"DB_IP_TYPE": "carrier-pigeon"},
                                 {"LINK_SOURCE": "meet"}, {"MEET_ACCESS_TYPE": "PUBLIC"},
                                 {"DATABASE_URL": "mysql://x"}, {"DATABASE_URL": "postgresql://h/db?sslmode=sometimes"},
                                 {"ASSIGN_MEETING_LINK_URL": "assign.example.com"}, {"LOG_FORMAT": "xml"}])
def test_bad_values_are_clear_errors(env):
    with pytest.raises(ConfigurationError):
        config.from_environment(env)


def test_secrets_do_not_show_in_repr():
    s = config.from_environment({"MIDTRANS_SERVER_KEY": "SB-secret", "DB_PASS": "pw", "INTERNAL_API_TOKEN": "tok"})
    assert "secret" not in repr(s) and "pw" not in repr(s) and "tok" not in repr(s)


def test_cloud_sql_connector_is_used_when_an_instance_is_named(monkeypatch):
    """The Cloud SQL path cannot reach Google here; this checks how it drives the connector."""
    calls = []

    class FakeConnector:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def connect(self, instance, driver, **kwargs):
            calls.append(("connect", instance, driver, kwargs))

            class Conn:
                autocommit = False
            return Conn()

    import google.cloud.sql.connector as connector_module
    monkeypatch.setattr(connector_module, "Connector", FakeConnector)
    s = config.from_environment({"INSTANCE_CONNECTION_NAME": "p:asia-southeast2:pg", "DB_USER": "app",
                                 "DB_PASS": "pw", "DB_NAME": "bookings"})
    connect = connector_for(s)
    assert calls == []  # nothing is created until the first connection
    first, _second = connect(), connect()
    assert first.autocommit is True
    assert calls[0] == ("init", {"refresh_strategy": "lazy", "ip_type": "public", "enable_iam_auth": False})
    assert calls[1] == ("connect", "p:asia-southeast2:pg", "pg8000", {"user": "app", "db": "bookings", "password": "pw",
                                                                "startup_params": None})
    assert [c[0] for c in calls] == ["init", "connect", "connect"]  # one connector, reused

    calls.clear()
    iam = config.from_environment({"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "sa@p.iam", "DB_IAM_AUTH": "true"})
    connector_for(iam)()
    assert calls[0][1]["enable_iam_auth"] is True and "password" not in calls[1][3]


def test_every_problem_is_one_line_naming_its_setting():
    found = config.problems({"DB_POOL_SIZE": "x", "LINK_SOURCE": "meet", "MEET_ACCESS_TYPE": "PUBLIC"})
    assert [line.split(" ", 1)[0] for line in found] == ["DB_POOL_SIZE", "LINK_SOURCE", "MEET_ACCESS_TYPE"]
    assert config.problems({}) == []
