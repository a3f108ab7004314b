"""A stand-in for gcloud, for deploy.sh's tests: a bash `gcloud` on PATH hands each call's
arguments and standard input to a FakeGcloud in the test process, which records the call and
keeps just enough state to answer describe and list as gcloud would on a project that starts
empty. (A Python process per call would cost more than the whole rest of a deploy run.)

It refuses what the real CLI refuses for the commands deploy.sh uses: an unknown command, or a
flag that command does not have (FLAGS, as gcloud 528.0.0 has them; the replay test sends
every line the fake accepted through the real gcloud too, so the two cannot drift apart).

What a test can ask of it: fail_once(words) makes that call fail once (a run dying half way);
iam_lag / metric_lag make the first N bindings on a new service account, or policies on a new
metric, fail as Google documents for resources created moments ago; billing False."""
from __future__ import annotations

import json
import os
import socketserver
import threading
from pathlib import Path

GLOBAL = {"project", "quiet", "format", "flags-file"}
FLAGS = {
    ("config", "get-value"): set(),
    ("projects", "describe"): set(),
    ("billing", "projects", "describe"): set(),
    ("services", "enable"): set(),
    ("iam", "service-accounts", "describe"): set(),
    ("iam", "service-accounts", "create"): {"display-name"},
    ("sql", "instances", "describe"): set(),
    ("sql", "instances", "create"): {"database-version", "region", "tier", "edition", "database-flags"},
    ("sql", "databases", "describe"): {"instance"},
    ("sql", "databases", "create"): {"instance"},
    ("sql", "users", "list"): {"instance"},
    ("sql", "users", "create"): {"instance", "password"},
    ("sql", "users", "set-password"): {"instance", "password"},
    ("secrets", "describe"): set(),
    ("secrets", "create"): {"replication-policy"},
    ("secrets", "versions", "add"): {"data-file"},
    ("secrets", "versions", "list"): {"filter", "limit"},
    ("secrets", "versions", "access"): {"secret"},
    ("secrets", "add-iam-policy-binding"): {"member", "role"},
    ("projects", "add-iam-policy-binding"): {"member", "role", "condition"},
    ("functions", "describe"): {"region"},
    ("functions", "deploy"): {"gen2", "region", "runtime", "source", "entry-point", "trigger-http",
                              "allow-unauthenticated", "no-allow-unauthenticated", "service-account",
                              "build-service-account", "memory", "cpu", "concurrency", "min-instances",
                              "max-instances", "timeout", "set-env-vars", "set-secrets", "update-labels"},
    ("functions", "add-invoker-policy-binding"): {"region", "member"},
    ("run", "services", "update"): {"region", "no-invoker-iam-check"},
    ("scheduler", "jobs", "describe"): {"location"},
    ("scheduler", "jobs", "create", "http"): {"location", "schedule", "uri", "http-method", "message-body", "headers",
                                              "oidc-service-account-email", "oidc-token-audience"},
    ("scheduler", "jobs", "update", "http"): {"location", "schedule", "uri", "http-method", "message-body",
                                              "update-headers", "oidc-service-account-email", "oidc-token-audience"},
    ("logging", "metrics", "describe"): set(),
    ("logging", "metrics", "create"): {"description", "log-filter"},
    ("beta", "monitoring", "channels", "list"): {"filter"},
    ("beta", "monitoring", "channels", "create"): {"display-name", "type", "channel-labels"},
    ("alpha", "monitoring", "policies", "list"): {"filter"},
    ("alpha", "monitoring", "policies", "create"): {"policy-from-file"},
}
MUTATING = ("create", "add", "deploy", "set-password", "update", "enable", "add-iam-policy-binding",
            "add-invoker-policy-binding")

CLIENT = """#!/usr/bin/env bash
# gcloud for the tests: hands its arguments and standard input to the FakeGcloud in pytest.
stdin=""
if [ ! -t 0 ]; then stdin="$(cat; printf x)"; stdin="${stdin%x}"; fi
exec 3<>"/dev/tcp/127.0.0.1/${FAKE_GCLOUD_PORT:?}"
printf '%s\\0' "$#" "$@" "$stdin" >&3
IFS= read -r -d '' code <&3
IFS= read -r -d '' out <&3
IFS= read -r -d '' err <&3
printf '%s' "$out"
printf '%s' "$err" >&2
exit "$code"
"""


class Refused(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def fresh_state() -> dict:
    return {"sa": [], "new_sa": [], "functions": {}, "jobs": {}, "instances": [], "databases": [], "users": {},
            "secrets": {}, "metrics": [], "channels": [], "policies": [], "bindings": [], "services": [],
            "invoker_iam_check": {}}


class FakeGcloud:
    def __init__(self, project_default: str = ""):
        self.state = fresh_state()
        self.calls: list[dict] = []      # every call: {"argv": [...], "stdin": "..."}
        self.failing: list[str] = []     # calls (their leading words) that fail once
        self.iam_lag = self.metric_lag = 0
        self.billing = True
        self.project_default = project_default
        self._lagged: dict[str, int] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                fields, buffer = [], b""
                while len(fields) < 1 or len(fields) < int(fields[0]) + 2:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    *done, buffer = buffer.split(b"\0")
                    fields += [f.decode() for f in done]
                argv, stdin = fields[1:-1], fields[-1]
                code, out, err = fake.call(argv, stdin)
                self.request.sendall(f"{code}\0{out}\0{err}\0".encode())

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def install(self, bindir: Path) -> dict:
        """Writes the gcloud client into bindir; returns the environment it needs."""
        client = bindir / "gcloud"
        client.write_text(CLIENT)
        client.chmod(0o755)
        return {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_GCLOUD_PORT": str(self.port)}

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def fail_once(self, words: str) -> None:
        self.failing.append(words)

    def commands(self, *prefix: str) -> list[list[str]]:
        """The argv of every recorded call whose words start with prefix."""
        return [c["argv"] for c in self.calls if _words(c["argv"])[:len(prefix)] == list(prefix)]

    def mutations(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls if any(w in MUTATING for w in _words(c["argv"]))]

    # --- one call ---------------------------------------------------------------------------

    def call(self, argv: list[str], stdin: str) -> tuple[int, str, str]:
        with self._lock:
            self.calls.append({"argv": argv, "stdin": stdin})
            words = _words(argv)
            try:
                return 0, self._answer(words, _flags(argv), stdin) or "", ""
            except Refused as exc:
                return exc.code, "", f"ERROR: (gcloud.{'.'.join(words[:3])}) {exc}\n"

    def _lagging(self, key: str, limit: int) -> bool:
        seen = self._lagged.get(key, 0)
        if seen < limit:
            self._lagged[key] = seen + 1
            return True
        return False

    def _bind(self, resource: str, flags: dict) -> None:
        member = flags["member"]
        account = member.removeprefix("serviceAccount:")
        if account in self.state["new_sa"] and self._lagging(f"iam:{account}", self.iam_lag):
            raise Refused(f"INVALID_ARGUMENT: Service account {account} does not exist.")
        binding = [resource, member, flags.get("role", "roles/run.invoker")]
        if binding not in self.state["bindings"]:
            self.state["bindings"].append(binding)

    def _answer(self, words: list[str], flags: dict, stdin: str) -> str | None:
        command = next((c for c in sorted(FLAGS, key=len, reverse=True) if tuple(words[:len(c)]) == c), None)
        if command is None:
            raise Refused(f"Invalid choice: {' '.join(words)}", 2)
        if flags.get("flags-file") == "-":  # YAML lines "--flag: value" on standard input
            for line in stdin.splitlines():
                name, _, value = line.partition(":")
                flags[name.strip().lstrip("-")] = value.strip()
        unknown = sorted(set(flags) - FLAGS[command] - GLOBAL)
        if unknown:
            raise Refused(f"unrecognized arguments: {' '.join('--' + f for f in unknown)}", 2)
        for failing in self.failing:
            if " ".join(words).startswith(failing):
                self.failing.remove(failing)
                raise Refused("There was a problem refreshing your current auth tokens: Connection reset by peer")
        s, names = self.state, words[len(command):]
        match (command, names):
            case (("config", "get-value"), ["project"]):
                return self.project_default
            case (("projects", "describe"), [_]):
                return "123456789012\n"
            case (("billing", "projects", "describe"), [_]):
                return f"{self.billing}\n"
            case (("services", "enable"), apis):
                s["services"] = sorted(set(s["services"]) | set(apis))
            case (("iam", "service-accounts", "describe"), [sa]):
                if sa not in s["sa"]:
                    raise Refused(f"NOT_FOUND: Unknown service account {sa}")
            case (("iam", "service-accounts", "create"), [name]):
                email = f"{name}@{flags['project']}.iam.gserviceaccount.com"
                if email in s["sa"]:
                    raise Refused(f"ALREADY_EXISTS: Service account {email} already exists")
                s["sa"].append(email)
                s["new_sa"].append(email)
            case (("sql", "instances", "describe"), [name]):
                if name not in s["instances"]:
                    raise Refused(f"HTTPError 404: The Cloud SQL instance does not exist: {name}")
            case (("sql", "instances", "create"), [name]):
                s["instances"].append(name)
            case (("sql", "databases", "describe"), [name]):
                if name not in s["databases"]:
                    raise Refused(f"HTTPError 404: Not Found: database {name}")
            case (("sql", "databases", "create"), [name]):
                s["databases"].append(name)
            case (("sql", "users", "list"), []):
                return "".join(f"{u}\n" for u in s["users"])
            case (("sql", "users", "create"), [name]):
                if not flags.get("password"):
                    raise Refused("a password is required for a built-in user")
                s["users"][name] = flags["password"]
            case (("sql", "users", "set-password"), [name]):
                if name not in s["users"]:
                    raise Refused(f"HTTPError 404: user {name} not found")
                s["users"][name] = flags["password"]
            case (("secrets", "describe"), [name]):
                if name not in s["secrets"]:
                    raise Refused(f"NOT_FOUND: Secret [{name}] not found")
            case (("secrets", "create"), [name]):
                if name in s["secrets"]:
                    raise Refused(f"ALREADY_EXISTS: Secret [{name}]")
                s["secrets"][name] = []
            case (("secrets", "versions", "add"), [name]):
                if name not in s["secrets"]:
                    raise Refused(f"NOT_FOUND: Secret [{name}] not found")
                if flags["data-file"] != "-":
                    raise Refused("deploy.sh sends secret values on standard input only")
                s["secrets"][name].append(stdin)
            case (("secrets", "versions", "list"), [name]):
                if name not in s["secrets"]:
                    raise Refused(f"NOT_FOUND: Secret [{name}] not found")
                if s["secrets"][name]:
                    return f"projects/123456789012/secrets/{name}/versions/{len(s['secrets'][name])}\n"
            case (("secrets", "versions", "access"), [version]):
                versions = s["secrets"].get(flags["secret"], [])
                if not version.isdigit() or not 1 <= int(version) <= len(versions):
                    raise Refused(f"NOT_FOUND: Secret Version [{version}] not found")
                return versions[int(version) - 1]
            case (("secrets", "add-iam-policy-binding"), [name]):
                if name not in s["secrets"]:
                    raise Refused(f"NOT_FOUND: Secret [{name}] not found")
                self._bind(f"secret:{name}", flags)
            case (("projects", "add-iam-policy-binding"), [project]):
                self._bind(f"project:{project}", flags)
            case (("functions", "describe"), [name]):
                if name not in s["functions"]:
                    raise Refused(f"NOT_FOUND: function {name}")
                if "serviceConfig.uri" in flags.get("format", ""):
                    return f"https://{name}-abc123-{flags['region']}.a.run.app\n"
                return s["functions"][name]["hash"] + "\n"
            case (("functions", "deploy"), [name]):
                source = Path(flags["source"])
                if not (source / "main.py").exists() or not (source / "requirements.txt").exists():
                    raise Refused("Provided source directory does not have file [main.py] and [requirements.txt]")
                s["functions"][name] = {"hash": flags["update-labels"].split("=", 1)[1], "env": flags["set-env-vars"],
                                        "secrets": flags["set-secrets"], "argv": words}
                if "allow-unauthenticated" in flags:
                    self._bind(f"function:{name}", {"member": "allUsers"})
            case (("functions", "add-invoker-policy-binding"), [name]):
                if name not in s["functions"]:
                    raise Refused(f"NOT_FOUND: function {name}")
                self._bind(f"function:{name}", flags)
            case (("run", "services", "update"), [name]):
                if name not in s["functions"]:
                    raise Refused(f"Service [{name}] could not be found.")
                s["invoker_iam_check"][name] = "no-invoker-iam-check" not in flags
            case (("scheduler", "jobs", "describe"), [job]):
                if job not in s["jobs"]:
                    raise Refused(f"NOT_FOUND: Job not found: {job}")
            case (("scheduler", "jobs", "create", "http"), [job]):
                if job in s["jobs"]:
                    raise Refused(f"ALREADY_EXISTS: Job {job} already exists")
                s["jobs"][job] = flags
            case (("scheduler", "jobs", "update", "http"), [job]):
                if job not in s["jobs"]:
                    raise Refused(f"NOT_FOUND: Job not found: {job}")
                s["jobs"][job] = {**s["jobs"][job], **flags}
            case (("logging", "metrics", "describe"), [name]):
                if name not in s["metrics"]:
                    raise Refused(f"NOT_FOUND: Metric {name} does not exist")
            case (("logging", "metrics", "create"), [name]):
                s["metrics"].append(name)
            case (("beta", "monitoring", "channels", "list"), []):
                return "".join(c["name"] + "\n" for c in s["channels"] if c["email"] in flags.get("filter", ""))
            case (("beta", "monitoring", "channels", "create"), []):
                email = flags["channel-labels"].split("=", 1)[1]
                s["channels"].append({"name": f"projects/{flags['project']}/notificationChannels/{len(s['channels']) + 1}",
                                      "email": email})
            case (("alpha", "monitoring", "policies", "list"), []):
                return "".join(f"policies/{i}\n" for i, p in enumerate(s["policies"])
                               if f'displayName="{p["displayName"]}"' == flags.get("filter"))
            case (("alpha", "monitoring", "policies", "create"), []):
                policy = json.loads(Path(flags["policy-from-file"]).read_text())
                condition = policy["conditions"][0]
                metric = (condition.get("conditionThreshold") or condition["conditionAbsent"])["filter"].split('"')[1]
                if metric.rsplit("/", 1)[-1] in s["metrics"] and self._lagging(f"metric:{metric}", self.metric_lag):
                    raise Refused(f'Error 404: Cannot find metric(s) that match type = "{metric}". If a metric was '
                                  "created recently, it could take up to 10 minutes to become available. "
                                  "Please try again soon.")
                s["policies"].append(policy)
            case _:
                raise Refused(f"fake gcloud does not know: {' '.join(words)}", 2)
        return None


def _words(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("--")]


def _flags(argv: list[str]) -> dict:
    return dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in argv if a.startswith("--"))
