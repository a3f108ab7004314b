"""Replays command lines through the real gcloud's own parser, in one process (run with the
Python gcloud itself runs on; see test_deploy.real_gcloud). Reads JSON lines {"argv": [...],
"stdin": "..."} and writes one JSON line per command: {"argv", "exit", "stderr"}.

Run offline (a fresh CLOUDSDK_CONFIG, no account, proxies at a closed port), gcloud checks
a command's arguments before its credentials: a valid line stops at "You do not currently
have an active account selected", anything else is the CLI refusing the line."""
import io
import json
import os
import sys
import tempfile

root = os.environ["CLOUDSDK_ROOT_DIR"]
sys.path[:0] = [os.path.join(root, "lib"), os.path.join(root, "lib", "third_party")]

from googlecloudsdk import gcloud_main  # noqa: E402

cli = gcloud_main.CreateCLI([])
answers = []
for line in sys.stdin.read().splitlines():
    call = json.loads(line)
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as given:
        given.write(call.get("stdin", ""))
        given.seek(0)
        saved_err, saved_in = os.dup(2), os.dup(0)
        sys.stderr.flush()
        os.dup2(err.fileno(), 2)
        os.dup2(given.fileno(), 0)
        sys.stdin = io.TextIOWrapper(os.fdopen(os.dup(0), "rb"))
        code = 0
        try:
            cli.Execute(call["argv"])
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - report whatever gcloud raised
            code = f"{type(exc).__name__}: {exc}"
        finally:
            sys.stderr.flush()
            os.dup2(saved_err, 2)
            os.dup2(saved_in, 0)
            os.close(saved_err)
            os.close(saved_in)
        err.seek(0)
        answers.append({"argv": call["argv"], "exit": code, "stderr": err.read()})
sys.stdout.write("".join(json.dumps(a) + "\n" for a in answers))
