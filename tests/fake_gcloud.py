#!/usr/bin/env python3
"""A stand-in for gcloud: records every call (one JSON line each) in $FAKE_GCLOUD_STATE/calls.jsonl
and keeps just enough state (Cloud SQL, secrets, service accounts, functions, scheduler jobs,
log metrics, alert channels and policies) to answer describe and list as gcloud would on a
project that starts empty. Secret values arrive on standard input, as deploy.sh sends them."""
import json
import os
import sys
from pathlib import Path

state_dir = Path(os.environ["FAKE_GCLOUD_STATE"])
state_file = state_dir / "state.json"
EMPTY = {"sa": [], "functions": {}, "jobs": [], "instances": [], "databases": [], "users": [], "secrets": {},
         "metrics": [], "channels": [], "policies": []}
state = {**EMPTY, **(json.loads(state_file.read_text()) if state_file.exists() else {})}
argv = sys.argv[1:]
with open(state_dir / "calls.jsonl", "a") as log:
    log.write(json.dumps(argv) + "\n")

words = [a for a in argv if not a.startswith("--")]
flags = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in argv if a.startswith("--"))


def save():
    state_file.write_text(json.dumps(state))


def fail(message):
    print(f"ERROR: (gcloud) {message}", file=sys.stderr)
    sys.exit(1)


match words:
    case ["config", "get-value", "project"]:
        print(os.environ.get("FAKE_GCLOUD_PROJECT", ""))
    case ["iam", "service-accounts", "describe", sa]:
        if sa not in state["sa"]:
            fail(f"NOT_FOUND: {sa}")
    case ["iam", "service-accounts", "create", name]:
        state["sa"].append(f"{name}@{flags['project']}.iam.gserviceaccount.com")
        save()
    case ["sql", "instances", "describe", name]:
        if name not in state["instances"]:
            fail(f"HTTPError 404: The Cloud SQL instance does not exist: {name}")
    case ["sql", "instances", "create", name]:
        state["instances"].append(name)
        save()
    case ["sql", "databases", "describe", name]:
        if name not in state["databases"]:
            fail(f"HTTPError 404: Not Found: database {name}")
    case ["sql", "databases", "create", name]:
        state["databases"].append(name)
        save()
    case ["sql", "users", "list"]:
        print("\n".join(state["users"]))
    case ["sql", "users", "create", name]:
        if "prompt-for-password" in flags and not sys.stdin.read():
            fail("a password is required")
        state["users"].append(name)
        save()
    case ["secrets", "describe", name]:
        if name not in state["secrets"]:
            fail(f"NOT_FOUND: Secret [{name}] not found")
    case ["secrets", "create", name]:
        if name in state["secrets"]:
            fail(f"ALREADY_EXISTS: Secret [{name}]")
        state["secrets"][name] = []
        save()
    case ["secrets", "versions", "add", name]:
        if name not in state["secrets"]:
            fail(f"NOT_FOUND: Secret [{name}] not found")
        state["secrets"][name].append(sys.stdin.read())
        save()
    case ["secrets", "versions", "describe", "latest"]:
        versions = state["secrets"].get(flags["secret"])
        if not versions:
            fail(f"NOT_FOUND: Secret [{flags['secret']}] has no versions")
        print(f"projects/{flags['project']}/secrets/{flags['secret']}/versions/{len(versions)}")
    case ["secrets", "versions", "access", _version]:
        versions = state["secrets"].get(flags["secret"]) or ["fake-db-password"]
        sys.stdout.write(versions[-1])
    case ["secrets", "add-iam-policy-binding", name]:
        if name not in state["secrets"]:
            fail(f"NOT_FOUND: Secret [{name}] not found")
    case ["logging", "metrics", "describe", name]:
        if name not in state["metrics"]:
            fail(f"NOT_FOUND: metric {name}")
    case ["logging", "metrics", "create", name]:
        state["metrics"].append(name)
        save()
    case ["beta", "monitoring", "channels", "list"]:
        print("\n".join(c["name"] for c in state["channels"] if c["email"] in flags.get("filter", "")))
    case ["beta", "monitoring", "channels", "create"]:
        email = flags["channel-labels"].split("=", 1)[1]
        state["channels"].append({"name": f"projects/{flags['project']}/notificationChannels/{len(state['channels']) + 1}",
                                  "email": email})
        save()
    case ["alpha", "monitoring", "policies", "list"]:
        print("\n".join(f"policies/{i}" for i, p in enumerate(state["policies"])
                        if f'displayName="{p["displayName"]}"' == flags.get("filter")))
    case ["alpha", "monitoring", "policies", "create"]:
        state["policies"].append(json.loads(Path(flags["policy-from-file"]).read_text()))
        save()
    case ["functions", "describe", name]:
        if name not in state["functions"]:
            fail(f"NOT_FOUND: function {name}")
        if "serviceConfig.uri" in flags.get("format", ""):
            print(f"https://{name}-abc123-{flags['region']}.a.run.app")
        else:
            print(state["functions"][name])
    case ["functions", "deploy", name]:
        source = Path(flags["source"])
        if not (source / "main.py").exists() or not (source / "requirements.txt").exists():
            fail("Provided source directory does not have file [main.py] and [requirements.txt]")
        state["functions"][name] = flags["update-labels"].split("=", 1)[1]
        save()
    case ["scheduler", "jobs", "describe", job]:
        if job not in state["jobs"]:
            fail(f"NOT_FOUND: job {job}")
    case ["scheduler", "jobs", "create", "http", job]:
        state["jobs"].append(job)
        save()
    case (["services", "enable", *_] | ["projects", "add-iam-policy-binding", _]
          | ["functions", "add-invoker-policy-binding", _]
          | ["scheduler", "jobs", "update", "http", _]):
        pass
    case _:
        fail(f"fake gcloud does not know: {' '.join(argv)}")
