#!/usr/bin/env bash
# Deploys Meeting Links to a Google Cloud project, from an empty one: checks every setting
# first (nothing is created until all are good), then creates what is missing (APIs, service
# accounts, Cloud SQL instance, database, user, secrets, alerts), applies the migrations,
# deploys both functions and schedules the sweep. Run it again after any change: what exists
# is left as it is, and what a failed run left half done is completed.
# docs/deploying.md describes each setting; every gcloud line here is checked against the
# real gcloud CLI by tests/http/test_deploy.py.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--config FILE]

  --dry-run      check the settings, print every command, run none, write nothing
  --config FILE  read settings (VAR=value lines) from FILE (default: ./deploy.env if present)
  -h, --help     this help

The first run on a project needs the Midtrans server key once, from a file or standard input:
  MIDTRANS_SERVER_KEY_FILE=path/to/key ./deploy.sh      (or MIDTRANS_SERVER_KEY_FILE=- to read stdin)
Settings and their defaults: docs/deploying.md.
EOF
}

DRY_RUN=false
CONFIG_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=true ;;
        --config)
            [ $# -ge 2 ] || { echo "deploy.sh: --config needs a file" >&2; exit 2; }
            CONFIG_FILE="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "deploy.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "$CONFIG_FILE" ] && [ ! -f "$CONFIG_FILE" ]; then
    echo "deploy.sh: config file $CONFIG_FILE does not exist" >&2
    exit 2
fi
if [ -z "$CONFIG_FILE" ] && [ -f "$REPO/deploy.env" ]; then
    CONFIG_FILE="$REPO/deploy.env"
fi
if [ -n "$CONFIG_FILE" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$CONFIG_FILE"
    set +a
fi

GCLOUD="${GCLOUD:-gcloud}"
# The settings' rules and defaults, the functions' environments and the migrations come from
# the project's own library (make install), so that nothing here restates a rule the
# functions apply.
ML="${MEETING_LINKS:-$REPO/.venv/bin/meeting-links}"
PYTHON="${DEPLOY_PYTHON:-$(dirname "$ML")/python}"
# A deploy reads the checkout and writes nothing into it, byte-code caches included.
export PYTHONDONTWRITEBYTECODE=1
settings() { "$PYTHON" -m meeting_links.support.deploy_settings; }
# Google documents minutes of delay before a new service account or log-based metric can be
# used: such a call is retried, RETRY_BASE_S doubling up to a minute, for RETRY_BUDGET_S.
RETRY_BASE_S="${DEPLOY_RETRY_BASE_S:-5}"
RETRY_BUDGET_S="${DEPLOY_RETRY_BUDGET_S:-600}"

die() { echo "deploy.sh: $*" >&2; exit 2; }
if [ ! -x "$ML" ] || [ ! -x "$PYTHON" ]; then die "$ML is missing: run make install first"; fi
command -v "$GCLOUD" >/dev/null || die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"

if [ -z "${PROJECT_ID:-}" ]; then
    PROJECT_ID="$("$GCLOUD" config get-value project 2>/dev/null || true)"
    export PROJECT_ID
fi

# Print a command, then run it unless this is a dry run.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" = false ]; then "$@"; fi
}

# Run a command that reads a secret on standard input; it is never printed and never on a
# command line.
run_with_stdin() {
    local value="$1"; shift
    printf '+'; printf ' %q' "$@"; printf ' < (secret, not shown)\n'
    if [ "$DRY_RUN" = false ]; then printf '%s' "$value" | "$@"; fi
}

# Like run, but while the call fails with an error matching $1 (what Google answers for a
# resource created moments ago), wait and try again; $2 says what is awaited.
run_retrying() {
    local pattern="$1" what="$2" delay="$RETRY_BASE_S" started="$SECONDS" err
    shift 2
    printf '+'; printf ' %q' "$@"; printf '\n'
    [ "$DRY_RUN" = false ] || return 0
    until err="$("$@" 2>&1 >/dev/null)"; do
        if ! grep -qiE "$pattern" <<< "$err" || [ $((SECONDS - started)) -ge "$RETRY_BUDGET_S" ]; then
            printf '%s\n' "$err" >&2
            return 1
        fi
        echo "  waiting ${delay}s for $what (up to ${RETRY_BUDGET_S}s in all)"
        sleep "$delay"
        delay=$((delay * 2 > 60 ? 60 : delay * 2))
    done
}
# An IAM call naming a service account created moments ago.
run_iam() { run_retrying "does not exist|not found" "the new service account to be known to IAM" "$@"; }
METRIC_LAG="Cannot find metric|could take up to 10 minutes"

# Whether a resource exists (a describe that succeeds). A dry run assumes it does not.
exists() {
    [ "$DRY_RUN" = false ] && "$@" >/dev/null 2>&1
}

# Read a secret's newest enabled version number ("" when it has none, or in a dry run).
enabled_version() {
    [ "$DRY_RUN" = false ] || return 0
    local name
    name="$("${G[@]}" secrets versions list "$1" --filter=state=enabled --limit=1 --format='value(name)' 2>/dev/null || true)"
    echo "${name##*/}"
}

# Bundles and alert policy files go to a scratch folder, never into the checkout.
WORK="${STAGE_DIR:-}"
if [ -z "$WORK" ]; then
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
fi

# The Midtrans key, when given: read now (standard input can be read only once).
KEY=""
if [ "${MIDTRANS_SERVER_KEY_FILE:-}" = "-" ]; then
    KEY="$(cat)"
elif [ -n "${MIDTRANS_SERVER_KEY_FILE:-}" ] && [ -f "$MIDTRANS_SERVER_KEY_FILE" ]; then
    KEY="$(cat "$MIDTRANS_SERVER_KEY_FILE")"
fi
KEY="${KEY%%[[:space:]]}"  # stored without the trailing newline an editor adds
KEY="${KEY%$'\r'}"

echo "== Preflight: every setting, the project, its billing and the secrets a person provides"
# Every setting with its default, or every problem with them (then nothing is created).
SETTINGS="$(SECRET_CHECK_MIDTRANS_SERVER_KEY="$KEY" settings)" || exit 2
eval "$SETTINGS"
G=("$GCLOUD" --project="$PROJECT_ID" --quiet)

problems=()
checked=()  # SECRET_CHECK_NAME=value for the second look at the settings, secrets included
DB_PASSWORD_VERSION=""
MIDTRANS_VERSION=""
if [ "$DRY_RUN" = true ]; then
    echo "dry run: the project, its billing and its secrets are not looked at"
else
    if ! "${G[@]}" projects describe "$PROJECT_ID" --format='value(projectNumber)' >/dev/null 2>&1; then
        problems+=("PROJECT_ID $PROJECT_ID cannot be read with gcloud's account (gcloud auth login, or check the id)")
    elif [ "$("${G[@]}" billing projects describe "$PROJECT_ID" --format='value(billingEnabled)' 2>/dev/null || true)" != True ]; then
        problems+=("billing is not enabled on $PROJECT_ID (gcloud billing projects link $PROJECT_ID --billing-account=...)")
    fi
    MIDTRANS_VERSION="$(enabled_version "$MIDTRANS_SECRET")"
    if [ -n "$MIDTRANS_VERSION" ]; then
        checked+=("SECRET_CHECK_MIDTRANS_SERVER_KEY=$("${G[@]}" secrets versions access "$MIDTRANS_VERSION" --secret="$MIDTRANS_SECRET")")
    elif [ -z "$KEY" ]; then
        problems+=("secret $MIDTRANS_SECRET has no key yet: give it once with MIDTRANS_SERVER_KEY_FILE=path (or - for standard input)")
    fi
    for pair in "LINK_EVENTS_SECRET:$LINK_EVENTS_SECRET_NAME:docs/link-events.md" \
                "MEET_CREDENTIALS:$MEET_CREDENTIALS_SECRET:docs/meet-spaces.md"; do
        IFS=: read -r variable secret doc <<< "$pair"
        [ -n "$secret" ] || continue
        version="$(enabled_version "$secret")"
        if [ -z "$version" ]; then
            problems+=("secret $secret ($variable) does not exist or has no enabled version: create it first ($doc)")
        else
            checked+=("SECRET_CHECK_$variable=$("${G[@]}" secrets versions access "$version" --secret="$secret")")
        fi
    done
    DB_PASSWORD_VERSION="$(enabled_version "$DB_PASSWORD_SECRET")"
fi
if [ ${#checked[@]} -gt 0 ]; then
    # The stored secrets' content, by the functions' own rules.
    # (exported in a subshell: a secret never becomes a command's argument)
    if ! found="$(export "${checked[@]}"; settings 2>&1 >/dev/null)"; then
        while IFS= read -r line; do problems+=("${line#deploy.sh: }"); done <<< "$found"
    fi
fi
if [ ${#problems[@]} -gt 0 ]; then
    printf 'deploy.sh: %s\n' "${problems[@]}" >&2
    echo "deploy.sh: nothing was created or changed" >&2
    exit 2
fi
echo "settings are good: project $PROJECT_ID, region $REGION"

echo "== APIs"
apis=(iam cloudresourcemanager serviceusage cloudfunctions run cloudbuild artifactregistry storage sqladmin
      secretmanager cloudscheduler logging monitoring)
if [ "$USES_MEET" = true ]; then apis+=(meet); fi
run "${G[@]}" services enable "${apis[@]/%/.googleapis.com}"

echo "== Service accounts (one per job, each with only what it needs)"
for sa in "$WEBHOOK_SA" "$ASSIGN_SA" "$SCHEDULER_SA" "$BUILD_SA"; do
    if ! exists "${G[@]}" iam service-accounts describe "$sa"; then
        run "${G[@]}" iam service-accounts create "${sa%%@*}" --display-name="${sa%%@*}"
    fi
done

echo "== Cloud SQL instance and database"
if ! exists "${G[@]}" sql instances describe "$CLOUD_SQL_INSTANCE"; then
    flags=()
    if [ -n "$DB_FLAGS" ]; then flags+=(--database-flags="$DB_FLAGS"); fi
    run "${G[@]}" sql instances create "$CLOUD_SQL_INSTANCE" --database-version="$DB_VERSION" \
        --region="$REGION" --tier="$DB_TIER" --edition="$DB_EDITION" "${flags[@]}"
fi
if ! exists "${G[@]}" sql databases describe "$DB_NAME" --instance="$CLOUD_SQL_INSTANCE"; then
    run "${G[@]}" sql databases create "$DB_NAME" --instance="$CLOUD_SQL_INSTANCE"
fi

echo "== Database user (its password generated once, kept only in Secret Manager)"
if ! exists "${G[@]}" secrets describe "$DB_PASSWORD_SECRET"; then
    run "${G[@]}" secrets create "$DB_PASSWORD_SECRET" --replication-policy=automatic
fi
new_password=false
if [ -z "$DB_PASSWORD_VERSION" ]; then  # new, or left without a version by a failed run
    run_with_stdin "$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)" \
        "${G[@]}" secrets versions add "$DB_PASSWORD_SECRET" --data-file=-
    new_password=true
    DB_PASSWORD_VERSION="$(enabled_version "$DB_PASSWORD_SECRET")"
fi
password=""
if [ "$DRY_RUN" = false ]; then
    password="$("${G[@]}" secrets versions access "$DB_PASSWORD_VERSION" --secret="$DB_PASSWORD_SECRET")"
fi
users=""
if [ "$DRY_RUN" = false ]; then
    users="$("${G[@]}" sql users list --instance="$CLOUD_SQL_INSTANCE" --format='value(name)')"
fi
# The password reaches gcloud as a flags file on standard input: never argv, never a prompt.
if ! grep -qx "$DB_USER" <<< "$users"; then
    run_with_stdin "--password: $password" "${G[@]}" sql users create "$DB_USER" \
        --instance="$CLOUD_SQL_INSTANCE" --flags-file=-
elif [ "$new_password" = true ]; then
    run_with_stdin "--password: $password" "${G[@]}" sql users set-password "$DB_USER" \
        --instance="$CLOUD_SQL_INSTANCE" --flags-file=-
fi

echo "== Midtrans server key"
if ! exists "${G[@]}" secrets describe "$MIDTRANS_SECRET"; then
    run "${G[@]}" secrets create "$MIDTRANS_SECRET" --replication-policy=automatic
fi
if [ -z "$MIDTRANS_VERSION" ] && { [ -n "$KEY" ] || [ "$DRY_RUN" = true ]; }; then
    run_with_stdin "$KEY" "${G[@]}" secrets versions add "$MIDTRANS_SECRET" --data-file=-
    MIDTRANS_VERSION="$(enabled_version "$MIDTRANS_SECRET")"
fi

echo "== Roles (each binding is made again on every run: a missing one is healed)"
project_role() {  # member, role
    run_iam "${G[@]}" projects add-iam-policy-binding "$PROJECT_ID" --member="$1" --role="$2" --condition=None
}
secret_reader() {  # secret, service account
    run_iam "${G[@]}" secrets add-iam-policy-binding "$1" --member="serviceAccount:$2" \
        --role=roles/secretmanager.secretAccessor
}
for sa in "$WEBHOOK_SA" "$ASSIGN_SA"; do
    project_role "serviceAccount:$sa" roles/cloudsql.client
    # The assign function's sweep asks Midtrans about payments whose notification was lost.
    secret_reader "$DB_PASSWORD_SECRET" "$sa"
    secret_reader "$MIDTRANS_SECRET" "$sa"
    if [ -n "$LINK_EVENTS_SECRET_NAME" ]; then secret_reader "$LINK_EVENTS_SECRET_NAME" "$sa"; fi
done
# Only the assign function (and its sweep) talks to the Meet API.
if [ -n "$MEET_CREDENTIALS_SECRET" ]; then secret_reader "$MEET_CREDENTIALS_SECRET" "$ASSIGN_SA"; fi
# Builds run as their own account (Cloud Build's default one has no rights in new projects
# since July 2024): what Google lists for a function's build service account.
for role in roles/logging.logWriter roles/artifactregistry.writer roles/storage.objectAdmin; do
    project_role "serviceAccount:$BUILD_SA" "$role"
done

echo "== Migrations"
if [ -n "$DEPLOY_DATABASE_URL" ]; then
    printf '+ DATABASE_URL=<redacted> %q migrate\n' "$ML"
    db_env=(DATABASE_URL="$DEPLOY_DATABASE_URL")
else
    printf '+ INSTANCE_CONNECTION_NAME=%s DB_USER=%s DB_NAME=%s DB_PASS=<from %s> %q migrate\n' \
        "$INSTANCE_CONNECTION_NAME" "$DB_USER" "$DB_NAME" "$DB_PASSWORD_SECRET" "$ML"
    db_env=(INSTANCE_CONNECTION_NAME="$INSTANCE_CONNECTION_NAME" DB_USER="$DB_USER" DB_NAME="$DB_NAME"
            DB_PASS="$password")
fi
# The functions' own settings (link events, say) do not concern the database commands.
database() { (unset LINK_EVENTS_URL; export "${db_env[@]}"; "$ML" "$@"); }
if [ "$DRY_RUN" = false ]; then database migrate; fi
# The pool's settings change only when asked for, and say what they change.
if [ -n "$BUSINESS_TIME_ZONE$LINK_BUFFER_MINUTES" ]; then
    configure=(pool configure)
    if [ -n "$BUSINESS_TIME_ZONE" ]; then configure+=(--time-zone="$BUSINESS_TIME_ZONE"); fi
    if [ -n "$LINK_BUFFER_MINUTES" ]; then configure+=(--buffer-minutes="$LINK_BUFFER_MINUTES"); fi
    printf '+ %q' "$ML" "${configure[@]}"; printf '\n'
    if [ "$DRY_RUN" = false ]; then database "${configure[@]}"; fi
fi

# A function's bundle: its main.py, the shared library and the runtime requirements,
# copied (the upload does not follow symlinks) into a folder of its own.
stage() {
    local name="$1" dir="$WORK/$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$REPO/functions/$name/main.py" "$dir/main.py"
    cp -R "$REPO/shared/meeting_links" "$dir/meeting_links"
    find "$dir" -name '__pycache__' -type d -prune -exec rm -rf {} +
    cp "$REPO/requirements.txt" "$dir/requirements.txt"
    printf '%s\n' '__pycache__/' '*.pyc' > "$dir/.gcloudignore"
    echo "staged $dir"
}

# The hash of a bundle and its settings, kept as a label: equal means nothing to deploy.
fingerprint() {
    local dir="$1"; shift
    { (cd "$dir" && find . -type f | LC_ALL=C sort | xargs sha256sum); printf '%s\n' "$@"; } \
        | sha256sum | cut -c1-16
}

deploy_function() {  # name, entry point, service account, max and min instances, env, secrets, access flags...
    local function="$1" entry="$2" sa="$3" max_instances="$4" min_instances="$5" env="$6" secrets="$7"
    shift 7
    local dir="$WORK/$entry" hash current=""
    stage "$entry"
    hash="$(fingerprint "$dir" "$RUNTIME" "$sa" "$BUILD_SA" "$max_instances" "$min_instances" "$env" "$secrets" \
        "$MEMORY" "$CPU" "$CONCURRENCY" "$FUNCTION_TIMEOUT" "$@")"
    if [ "$DRY_RUN" = false ]; then
        current="$("${G[@]}" functions describe "$function" --region="$REGION" \
            --format='value(labels.bundle-hash)' 2>/dev/null || true)"
    fi
    if [ "$current" = "$hash" ]; then
        echo "$function is up to date ($hash)"
        return
    fi
    run "${G[@]}" functions deploy "$function" --gen2 --region="$REGION" --runtime="$RUNTIME" \
        --source="$dir" --entry-point="$entry" --trigger-http "$@" \
        --service-account="$sa" --build-service-account="projects/$PROJECT_ID/serviceAccounts/$BUILD_SA" \
        --memory="$MEMORY" --cpu="$CPU" --concurrency="$CONCURRENCY" \
        --min-instances="$min_instances" --max-instances="$max_instances" --timeout="$FUNCTION_TIMEOUT" \
        --set-env-vars="$env" --set-secrets="$secrets" --update-labels="bundle-hash=$hash"
}

function_url() {
    if [ "$DRY_RUN" = true ]; then
        echo "https://$1-<hash>-$REGION.a.run.app"
    else
        "${G[@]}" functions describe "$1" --region="$REGION" --format='value(serviceConfig.uri)'
    fi
}

# NAME:VERSION for --set-secrets: the version chosen, or the newest enabled one now (Cloud
# Run reads a secret once per instance; "latest" would let two instances disagree after a
# rotation). A dry run, which reads nothing, shows "latest".
pinned() {
    local version="${3:-}"
    if [ -n "$SECRET_VERSION" ]; then
        version="$SECRET_VERSION"
    elif [ -z "$version" ]; then
        version="$(enabled_version "$2")"
    fi
    echo "$1=$2:${version:-latest}"
}

SECRETS="$(pinned DB_PASS "$DB_PASSWORD_SECRET" "$DB_PASSWORD_VERSION"),$(pinned MIDTRANS_SERVER_KEY "$MIDTRANS_SECRET" "$MIDTRANS_VERSION")"
if [ -n "$LINK_EVENTS_SECRET_NAME" ]; then
    SECRETS="$SECRETS,$(pinned LINK_EVENTS_SECRET "$LINK_EVENTS_SECRET_NAME")"
fi
ASSIGN_SECRETS="$SECRETS"
if [ -n "$MEET_CREDENTIALS_SECRET" ]; then
    ASSIGN_SECRETS="$ASSIGN_SECRETS,$(pinned MEET_CREDENTIALS "$MEET_CREDENTIALS_SECRET")"
fi

echo "== $ASSIGN_FUNCTION (private: only the webhook's and the scheduler's accounts may call it)"
deploy_function "$ASSIGN_FUNCTION" assign_meeting_link "$ASSIGN_SA" "$ASSIGN_MAX_INSTANCES" 0 \
    "$ASSIGN_ENV" "$ASSIGN_SECRETS" --no-allow-unauthenticated
ASSIGN_URL="$(function_url "$ASSIGN_FUNCTION")"
for invoker in "$WEBHOOK_SA" "$SCHEDULER_SA"; do
    run_iam "${G[@]}" functions add-invoker-policy-binding "$ASSIGN_FUNCTION" --region="$REGION" \
        --member="serviceAccount:$invoker"
done

echo "== $WEBHOOK_FUNCTION (public: Midtrans cannot authenticate; signatures are checked)"
access=(--allow-unauthenticated)
if [ "$WEBHOOK_ACCESS" = no-invoker-iam-check ]; then access=(); fi
deploy_function "$WEBHOOK_FUNCTION" midtrans_webhook "$WEBHOOK_SA" "$WEBHOOK_MAX_INSTANCES" "$WEBHOOK_MIN_INSTANCES" \
    "${WEBHOOK_ENV//@ASSIGN_URL@/$ASSIGN_URL}" "$SECRETS" "${access[@]}"
if [ "$WEBHOOK_ACCESS" = no-invoker-iam-check ]; then
    # Organisations that refuse allUsers (domain restricted sharing): Cloud Run skips the check.
    run "${G[@]}" run services update "$WEBHOOK_FUNCTION" --region="$REGION" --no-invoker-iam-check
else
    run "${G[@]}" functions add-invoker-policy-binding "$WEBHOOK_FUNCTION" --region="$REGION" --member=allUsers
fi
WEBHOOK_URL="$(function_url "$WEBHOOK_FUNCTION")"

echo "== Sweep schedule"
job=(--location="$REGION" --schedule="$SWEEP_SCHEDULE" --uri="$ASSIGN_URL" --http-method=POST
     --message-body='{"sweep": true}' --oidc-service-account-email="$SCHEDULER_SA"
     --oidc-token-audience="$ASSIGN_URL")
if exists "${G[@]}" scheduler jobs describe "$SWEEP_JOB" --location="$REGION"; then
    run "${G[@]}" scheduler jobs update http "$SWEEP_JOB" "${job[@]}" --update-headers=Content-Type=application/json
else
    run "${G[@]}" scheduler jobs create http "$SWEEP_JOB" "${job[@]}" --headers=Content-Type=application/json
fi

echo "== Alerts"
# Log-based metrics count the lines whose `alert` field names them (meeting_links/logs.py),
# never the wording of a message; a policy for each mails ALERT_EMAIL.
metric() {  # name, description, filter
    if ! exists "${G[@]}" logging metrics describe "$1"; then
        run "${G[@]}" logging metrics create "$1" --description="$2" --log-filter="$3"
    fi
}
policy() {  # display name, metric, comparison (or ABSENT), threshold, window in seconds
    local name="$1" metric_type="logging.googleapis.com/user/$2" file="$WORK/policy-$2.json" condition
    if [ "$DRY_RUN" = false ] && [ -n "$("${G[@]}" alpha monitoring policies list \
            --filter="displayName=\"$name\"" --format='value(name)' 2>/dev/null)" ]; then
        return
    fi
    if [ "$3" = ABSENT ]; then
        condition="\"conditionAbsent\": {\"filter\": \"metric.type=\\\"$metric_type\\\" AND resource.type=\\\"cloud_run_revision\\\"\", \"duration\": \"${5}s\", \"aggregations\": [{\"alignmentPeriod\": \"300s\", \"perSeriesAligner\": \"ALIGN_COUNT\"}]}"
    else
        condition="\"conditionThreshold\": {\"filter\": \"metric.type=\\\"$metric_type\\\" AND resource.type=\\\"cloud_run_revision\\\"\", \"comparison\": \"$3\", \"thresholdValue\": $4, \"duration\": \"0s\", \"aggregations\": [{\"alignmentPeriod\": \"${5}s\", \"perSeriesAligner\": \"ALIGN_SUM\", \"crossSeriesReducer\": \"REDUCE_SUM\"}]}"
    fi
    printf '{"displayName": "%s", "combiner": "OR", "notificationChannels": ["%s"], "conditions": [{"displayName": "%s", %s}]}\n' \
        "$name" "$CHANNEL" "$name" "$condition" > "$file"
    # Monitoring knows a new log-based metric only after a while ("up to 10 minutes").
    run_retrying "$METRIC_LAG" "Monitoring to know the metric $2" \
        "${G[@]}" alpha monitoring policies create --policy-from-file="$file"
}
if [ -n "$ALERT_EMAIL" ]; then
    services="resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"$WEBHOOK_FUNCTION\" OR \"$ASSIGN_FUNCTION\")"
    # Metrics first, policies last: the longer Monitoring has had, the fewer retries.
    metric meeting_links_pool_exhausted "A paid booking waits for a person to give it a link" \
        "$services AND jsonPayload.alert=\"pool_exhausted\""
    metric meeting_links_link_events_gone "The app's receiver answered 410 Gone: no link events are sent" \
        "$services AND jsonPayload.alert=\"link_events_gone\""
    metric meeting_links_meet_refused "Google refused the Meet credentials" \
        "$services AND jsonPayload.alert=\"meet_credentials_refused\""
    metric meeting_links_invalid_signatures "Notifications refused for a bad signature" \
        "$services AND jsonPayload.error=\"InvalidSignature\""
    metric meeting_links_5xx "Requests the functions answered with a 5xx" "$services AND httpRequest.status>=500"
    metric meeting_links_sweep_incomplete "Sweeps that ran out of time before finishing" \
        "$services AND jsonPayload.alert=\"sweep_incomplete\""
    metric meeting_links_sweep_runs "Sweeps that finished" "$services AND jsonPayload.alert=\"sweep_ran\""
    email_channel() {  # the notification channel mailing ALERT_EMAIL ("" when none, or in a dry run)
        [ "$DRY_RUN" = false ] || return 0
        "${G[@]}" beta monitoring channels list --filter="labels.email_address=\"$ALERT_EMAIL\"" \
            --format='value(name)' | head -n 1
    }
    CHANNEL="$(email_channel)"
    if [ -z "$CHANNEL" ]; then
        run "${G[@]}" beta monitoring channels create --display-name="Meeting Links alerts" --type=email \
            --channel-labels="email_address=$ALERT_EMAIL"
        CHANNEL="projects/$PROJECT_ID/notificationChannels/<new>"  # what a dry run shows
        if [ "$DRY_RUN" = false ]; then CHANNEL="$(email_channel)"; fi
    fi
    policy "Meeting Links: a booking waits for a person" meeting_links_pool_exhausted COMPARISON_GT 0 300
    policy "Meeting Links: link events refused by the app (410)" meeting_links_link_events_gone COMPARISON_GT 0 300
    policy "Meeting Links: Meet credentials refused" meeting_links_meet_refused COMPARISON_GT 0 300
    policy "Meeting Links: burst of invalid signatures" meeting_links_invalid_signatures COMPARISON_GT 20 300
    policy "Meeting Links: functions answering 5xx" meeting_links_5xx COMPARISON_GT 10 300
    policy "Meeting Links: sweeps keep running out of time" meeting_links_sweep_incomplete COMPARISON_GT 2 1800
    policy "Meeting Links: the sweep has not run for 30 minutes" meeting_links_sweep_runs ABSENT 0 1800
else
    echo "ALERT_EMAIL is not set: no alerts are created (docs/operations.md, \"Alerts\")"
fi

echo
if [ "$DRY_RUN" = true ]; then
    echo "Dry run: nothing was created or changed. The + lines are what a run on an empty project"
    echo "would do; a real run skips what exists and pins each secret to its newest version."
    exit 0
fi
echo "Secrets are pinned: $ASSIGN_SECRETS"
echo "To rotate one, add a version (printf '%s' \"\$NEW\" | gcloud secrets versions add NAME --data-file=-)"
echo "and run ./deploy.sh again."
echo "Done. Paste this URL into Midtrans (Settings > Configuration > Payment Notification URL):"
echo "  $WEBHOOK_URL"
