#!/usr/bin/env python3
"""A stand-in for gcloud: records every call (one JSON line each) in $FAKE_GCLOUD_STATE/calls.jsonl
and keeps just enough state (service accounts, functions, scheduler jobs) to answer describe."""
import json
import os
import sys
from pathlib import Path

state_dir = Path(os.environ["FAKE_GCLOUD_STATE"])
state_file = state_dir / "state.json"
state = json.loads(state_file.read_text()) if state_file.exists() else {"sa": [], "functions": {}, "jobs": []}
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
    case ["secrets", "versions", "access", _version]:
        sys.stdout.write("fake-db-password")
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
          | ["secrets", "add-iam-policy-binding", _] | ["functions", "add-invoker-policy-binding", _]
          | ["scheduler", "jobs", "update", "http", _]):
        pass
    case _:
        fail(f"fake gcloud does not know: {' '.join(argv)}")
