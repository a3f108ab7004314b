#!/usr/bin/env bash
# Deploys Meeting Links to a Google Cloud project, from an empty one: creates what is missing
# (Cloud SQL instance, database, user, secrets, service accounts, alerts), applies the
# migrations, deploys both functions and schedules the sweep. Safe to run again: what is
# already in place is left alone. README.md ("Deploying") lists every setting.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--config FILE]

  --dry-run      print every command, run none, write nothing
  --config FILE  read settings (VAR=value lines) from FILE (default: ./deploy.env if present)
  -h, --help     this help

The first run on a project needs the Midtrans server key once, from a file or standard input:
  MIDTRANS_SERVER_KEY_FILE=path/to/key ./deploy.sh      (or MIDTRANS_SERVER_KEY_FILE=- to read stdin)
Settings and their defaults: README.md, "Deploying".
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
PROJECT_ID="${PROJECT_ID:-}"
REGION="${REGION:-asia-southeast2}"
RUNTIME="${RUNTIME:-python312}"
CLOUD_SQL_INSTANCE="${CLOUD_SQL_INSTANCE:-meeting-links-pg}"
# Created when missing: PostgreSQL 15, 1 vCPU / 3.75 GB (max_connections 100), Enterprise.
DB_VERSION="${DB_VERSION:-POSTGRES_15}"
DB_TIER="${DB_TIER:-db-custom-1-3840}"
DB_EDITION="${DB_EDITION:-ENTERPRISE}"
DB_FLAGS="${DB_FLAGS:-}"
DB_NAME="${DB_NAME:-meeting_links}"
DB_USER="${DB_USER:-meeting_links_app}"
DB_PASSWORD_SECRET="${DB_PASSWORD_SECRET:-meeting-links-db-password}"
MIDTRANS_SECRET="${MIDTRANS_SECRET:-midtrans-server-key}"
# Empty: pin the version each secret's "latest" resolves to now (Cloud Run reads a secret
# once per instance; "latest" would let two instances disagree after a rotation).
SECRET_VERSION="${SECRET_VERSION:-}"
# Read once, when the Midtrans secret does not exist yet: a file, or - for standard input.
MIDTRANS_SERVER_KEY_FILE="${MIDTRANS_SERVER_KEY_FILE:-}"
# Where alerts go (pool exhausted, invalid signatures, 5xx, sweep not running); empty: none.
ALERT_EMAIL="${ALERT_EMAIL:-}"
MIDTRANS_IS_PRODUCTION="${MIDTRANS_IS_PRODUCTION:-false}"
# The signature does not cover transaction_status: deployed, the webhook acts on what
# Midtrans's GET Status API reports (README: "Second check"). false turns it off.
MIDTRANS_VERIFY_WITH_STATUS_API="${MIDTRANS_VERIFY_WITH_STATUS_API:-true}"
BUSINESS_TIME_ZONE="${BUSINESS_TIME_ZONE:-Asia/Jakarta}"
LINK_BUFFER_MINUTES="${LINK_BUFFER_MINUTES:-0}"
WEBHOOK_FUNCTION="${WEBHOOK_FUNCTION:-midtrans-webhook}"
ASSIGN_FUNCTION="${ASSIGN_FUNCTION:-assign-meeting-link}"
MEMORY="${MEMORY:-512Mi}"
CPU="${CPU:-1}"
CONCURRENCY="${CONCURRENCY:-8}"
WEBHOOK_MAX_INSTANCES="${WEBHOOK_MAX_INSTANCES:-5}"
# 1 keeps one webhook instance warm (no cold start for Midtrans; billed while idle).
WEBHOOK_MIN_INSTANCES="${WEBHOOK_MIN_INSTANCES:-0}"
ASSIGN_MAX_INSTANCES="${ASSIGN_MAX_INSTANCES:-5}"
DB_POOL_SIZE="${DB_POOL_SIZE:-4}"
DB_MAX_CONNECTIONS="${DB_MAX_CONNECTIONS:-100}"
DB_RESERVED_CONNECTIONS="${DB_RESERVED_CONNECTIONS:-15}"
# Private Meet spaces (README: "Private Meet spaces"): pool | pool_then_meet | meet_then_pool.
LINK_SOURCE="${LINK_SOURCE:-pool}"
# Secret holding MEET_CREDENTIALS (authorized-user JSON, or a service-account key used with
# MEET_IMPERSONATE_USER); empty: no Meet credentials are deployed.
MEET_CREDENTIALS_SECRET="${MEET_CREDENTIALS_SECRET:-}"
MEET_IMPERSONATE_USER="${MEET_IMPERSONATE_USER:-}"
MEET_ACCESS_TYPE="${MEET_ACCESS_TYPE:-TRUSTED}"
MEET_ENTRY_POINT_ACCESS="${MEET_ENTRY_POINT_ACCESS:-ALL}"
# Link events for the app (README: "Link events"): its URL, and the secret holding the
# Standard Webhooks signing secret.
LINK_EVENTS_URL="${LINK_EVENTS_URL:-}"
LINK_EVENTS_SECRET_NAME="${LINK_EVENTS_SECRET_NAME:-}"
FUNCTION_TIMEOUT="${FUNCTION_TIMEOUT:-30s}"
SWEEP_SCHEDULE="${SWEEP_SCHEDULE:-*/10 * * * *}"
SWEEP_JOB="${SWEEP_JOB:-meeting-links-sweep}"
# Optional: migrate through this URL (e.g. a Cloud SQL Auth Proxy on localhost) instead of
# the Python connector.
DEPLOY_DATABASE_URL="${DEPLOY_DATABASE_URL:-}"
MIGRATE="${MIGRATE:-$REPO/.venv/bin/meeting-links migrate}"
read -r -a MIGRATE_CMD <<< "$MIGRATE"

# Print a command, then run it unless this is a dry run.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" = false ]; then "$@"; fi
}

# Whether a resource exists (a describe that succeeds). A dry run assumes it does not.
exists() {
    [ "$DRY_RUN" = false ] && "$@" >/dev/null 2>&1
}

# Run a command that reads a secret value on standard input; the value is never printed
# and never on a command line.
run_with_stdin() {
    local value="$1"; shift
    printf '+'; printf ' %q' "$@"; printf ' < (secret value, not shown)\n'
    if [ "$DRY_RUN" = false ]; then printf '%s' "$value" | "$@"; fi
}

# Bundles and alert policy files go to a scratch folder, never into the checkout.
WORK="${STAGE_DIR:-}"
if [ -z "$WORK" ]; then
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
fi

if [ -z "$PROJECT_ID" ]; then
    PROJECT_ID="$("$GCLOUD" config get-value project 2>/dev/null || true)"
fi
[ -n "$PROJECT_ID" ] || { echo "PROJECT_ID is not set and gcloud has no default project" >&2; exit 2; }

# Connection budget: every instance of both functions may hold DB_POOL_SIZE connections.
budget=$(( (WEBHOOK_MAX_INSTANCES + ASSIGN_MAX_INSTANCES) * DB_POOL_SIZE ))
limit=$(( DB_MAX_CONNECTIONS - DB_RESERVED_CONNECTIONS ))
echo "connections: ($WEBHOOK_MAX_INSTANCES + $ASSIGN_MAX_INSTANCES instances) x $DB_POOL_SIZE = $budget of $limit usable"
if [ "$budget" -gt "$limit" ]; then
    echo "refusing to deploy: $budget connections exceed DB_MAX_CONNECTIONS - DB_RESERVED_CONNECTIONS = $limit" >&2
    exit 2
fi

INSTANCE_CONNECTION_NAME="$PROJECT_ID:$REGION:$CLOUD_SQL_INSTANCE"
WEBHOOK_SA="meeting-links-webhook@$PROJECT_ID.iam.gserviceaccount.com"
ASSIGN_SA="meeting-links-assign@$PROJECT_ID.iam.gserviceaccount.com"
SCHEDULER_SA="meeting-links-scheduler@$PROJECT_ID.iam.gserviceaccount.com"
G=("$GCLOUD" --project="$PROJECT_ID" --quiet)

echo "== APIs"
run "${G[@]}" services enable cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com \
    artifactregistry.googleapis.com sqladmin.googleapis.com secretmanager.googleapis.com \
    cloudscheduler.googleapis.com logging.googleapis.com monitoring.googleapis.com

echo "== Cloud SQL instance, database, user"
if ! exists "${G[@]}" sql instances describe "$CLOUD_SQL_INSTANCE"; then
    flags=()
    if [ -n "$DB_FLAGS" ]; then flags+=(--database-flags="$DB_FLAGS"); fi
    run "${G[@]}" sql instances create "$CLOUD_SQL_INSTANCE" --database-version="$DB_VERSION" \
        --region="$REGION" --tier="$DB_TIER" --edition="$DB_EDITION" "${flags[@]}"
fi
if ! exists "${G[@]}" sql databases describe "$DB_NAME" --instance="$CLOUD_SQL_INSTANCE"; then
    run "${G[@]}" sql databases create "$DB_NAME" --instance="$CLOUD_SQL_INSTANCE"
fi
# The application user's password: generated once, kept only in Secret Manager.
if ! exists "${G[@]}" secrets describe "$DB_PASSWORD_SECRET"; then
    run "${G[@]}" secrets create "$DB_PASSWORD_SECRET" --replication-policy=automatic
    run_with_stdin "$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)" \
        "${G[@]}" secrets versions add "$DB_PASSWORD_SECRET" --data-file=-
fi
users=""
if [ "$DRY_RUN" = false ]; then
    users="$("${G[@]}" sql users list --instance="$CLOUD_SQL_INSTANCE" --format='value(name)' 2>/dev/null || true)"
fi
if ! grep -qx "$DB_USER" <<< "$users"; then
    password=""
    if [ "$DRY_RUN" = false ]; then
        password="$("${G[@]}" secrets versions access latest --secret="$DB_PASSWORD_SECRET")"
    fi
    run_with_stdin "$password" "${G[@]}" sql users create "$DB_USER" --instance="$CLOUD_SQL_INSTANCE" \
        --prompt-for-password
fi

echo "== Midtrans server key"
if ! exists "${G[@]}" secrets describe "$MIDTRANS_SECRET"; then
    key=""
    if [ -z "$MIDTRANS_SERVER_KEY_FILE" ]; then
        if [ "$DRY_RUN" = false ]; then
            echo "deploy.sh: secret $MIDTRANS_SECRET does not exist: give the key once with MIDTRANS_SERVER_KEY_FILE=path (or - for standard input)" >&2
            exit 2
        fi
    elif [ "$MIDTRANS_SERVER_KEY_FILE" = "-" ]; then
        key="$(cat)"
    elif [ -f "$MIDTRANS_SERVER_KEY_FILE" ]; then
        key="$(cat "$MIDTRANS_SERVER_KEY_FILE")"
    else
        echo "deploy.sh: MIDTRANS_SERVER_KEY_FILE $MIDTRANS_SERVER_KEY_FILE does not exist" >&2
        exit 2
    fi
    key="${key%%[[:space:]]}"  # stored without the trailing newline an editor adds
    key="${key%$'\r'}"
    run "${G[@]}" secrets create "$MIDTRANS_SECRET" --replication-policy=automatic
    run_with_stdin "$key" "${G[@]}" secrets versions add "$MIDTRANS_SECRET" --data-file=-
fi

echo "== Service accounts and roles (only what each needs)"
for sa in "$WEBHOOK_SA" "$ASSIGN_SA" "$SCHEDULER_SA"; do
    if ! exists "${G[@]}" iam service-accounts describe "$sa"; then
        run "${G[@]}" iam service-accounts create "${sa%%@*}" --display-name="${sa%%@*}"
    fi
done
for sa in "$WEBHOOK_SA" "$ASSIGN_SA"; do
    run "${G[@]}" projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$sa" \
        --role=roles/cloudsql.client --condition=None
    run "${G[@]}" secrets add-iam-policy-binding "$DB_PASSWORD_SECRET" --member="serviceAccount:$sa" \
        --role=roles/secretmanager.secretAccessor
done
# The assign function's sweep asks Midtrans about payments whose notification was lost.
for sa in "$WEBHOOK_SA" "$ASSIGN_SA"; do
    run "${G[@]}" secrets add-iam-policy-binding "$MIDTRANS_SECRET" --member="serviceAccount:$sa" \
        --role=roles/secretmanager.secretAccessor
done

# Secrets only a person can create (README says how): a clear error when missing.
require_secret() {
    if [ "$DRY_RUN" = false ] && ! "${G[@]}" secrets describe "$1" >/dev/null 2>&1; then
        echo "deploy.sh: secret $1 ($2) does not exist: create it first (README: \"$3\")" >&2
        exit 2
    fi
}
# Only the assign function (and its sweep) talks to the Meet API.
if [ -n "$MEET_CREDENTIALS_SECRET" ]; then
    require_secret "$MEET_CREDENTIALS_SECRET" MEET_CREDENTIALS_SECRET "Private Meet spaces"
    run "${G[@]}" secrets add-iam-policy-binding "$MEET_CREDENTIALS_SECRET" --member="serviceAccount:$ASSIGN_SA" \
        --role=roles/secretmanager.secretAccessor
fi

if [ -n "$LINK_EVENTS_URL" ]; then
    [ -n "$LINK_EVENTS_SECRET_NAME" ] || { echo "deploy.sh: LINK_EVENTS_URL needs LINK_EVENTS_SECRET_NAME" >&2; exit 2; }
    require_secret "$LINK_EVENTS_SECRET_NAME" LINK_EVENTS_SECRET_NAME "Link events for the app"
    for sa in "$WEBHOOK_SA" "$ASSIGN_SA"; do
        run "${G[@]}" secrets add-iam-policy-binding "$LINK_EVENTS_SECRET_NAME" --member="serviceAccount:$sa" \
            --role=roles/secretmanager.secretAccessor
    done
fi

echo "== Migrations"
if [ -n "$DEPLOY_DATABASE_URL" ]; then
    printf '+ DATABASE_URL=<redacted> %s\n' "$MIGRATE"
    if [ "$DRY_RUN" = false ]; then
        # The functions' own settings (link events, say) do not concern the migration.
        LINK_EVENTS_URL="" DATABASE_URL="$DEPLOY_DATABASE_URL" BUSINESS_TIME_ZONE="$BUSINESS_TIME_ZONE" \
            LINK_BUFFER_MINUTES="$LINK_BUFFER_MINUTES" "${MIGRATE_CMD[@]}"
    fi
else
    printf '+ INSTANCE_CONNECTION_NAME=%s DB_USER=%s DB_NAME=%s DB_PASS=<from %s> %s\n' \
        "$INSTANCE_CONNECTION_NAME" "$DB_USER" "$DB_NAME" "$DB_PASSWORD_SECRET" "$MIGRATE"
    if [ "$DRY_RUN" = false ]; then
        LINK_EVENTS_URL="" DB_PASS="$("${G[@]}" secrets versions access "${SECRET_VERSION:-latest}" --secret="$DB_PASSWORD_SECRET")" \
            INSTANCE_CONNECTION_NAME="$INSTANCE_CONNECTION_NAME" DB_USER="$DB_USER" DB_NAME="$DB_NAME" \
            BUSINESS_TIME_ZONE="$BUSINESS_TIME_ZONE" LINK_BUFFER_MINUTES="$LINK_BUFFER_MINUTES" "${MIGRATE_CMD[@]}"
    fi
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

deploy_function() {
    local function="$1" entry="$2" sa="$3" max_instances="$4" access="$5" env="$6" secrets="$7" min_instances="$8"
    local dir="$WORK/$entry" hash current
    stage "$entry"
    hash="$(fingerprint "$dir" "$RUNTIME" "$sa" "$max_instances" "$access" "$env" "$secrets" \
        "$MEMORY" "$CPU" "$CONCURRENCY" "$FUNCTION_TIMEOUT" "$min_instances")"
    current=""
    if [ "$DRY_RUN" = false ]; then
        current="$("${G[@]}" functions describe "$function" --region="$REGION" \
            --format='value(labels.bundle-hash)' 2>/dev/null || true)"
    fi
    if [ "$current" = "$hash" ]; then
        echo "$function is up to date ($hash)"
        return
    fi
    run "${G[@]}" functions deploy "$function" --gen2 --region="$REGION" --runtime="$RUNTIME" \
        --source="$dir" --entry-point="$entry" --trigger-http "$access" \
        --service-account="$sa" --memory="$MEMORY" --cpu="$CPU" --concurrency="$CONCURRENCY" \
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

# NAME:VERSION for --set-secrets: the version chosen, or the one "latest" is now.
pinned() {
    if [ -n "$SECRET_VERSION" ]; then
        echo "$1:$SECRET_VERSION"
    elif [ "$DRY_RUN" = true ]; then
        echo "$1:latest"
    else
        local version
        version="$("${G[@]}" secrets versions describe latest --secret="$1" --format='value(name)')"
        echo "$1:${version##*/}"
    fi
}

COMMON_ENV="INSTANCE_CONNECTION_NAME=$INSTANCE_CONNECTION_NAME,DB_USER=$DB_USER,DB_NAME=$DB_NAME"
COMMON_ENV="$COMMON_ENV,DB_POOL_SIZE=$DB_POOL_SIZE,THREADS=$CONCURRENCY,GOOGLE_CLOUD_PROJECT=$PROJECT_ID"
DB_SECRET="DB_PASS=$(pinned "$DB_PASSWORD_SECRET")"
MIDTRANS_ENV="MIDTRANS_IS_PRODUCTION=$MIDTRANS_IS_PRODUCTION"
MIDTRANS_KEY_SECRET="MIDTRANS_SERVER_KEY=$(pinned "$MIDTRANS_SECRET")"
EVENTS_ENV=""
EVENTS_SECRET=""
if [ -n "$LINK_EVENTS_URL" ]; then
    EVENTS_ENV=",LINK_EVENTS_URL=$LINK_EVENTS_URL"
    EVENTS_SECRET=",LINK_EVENTS_SECRET=$(pinned "$LINK_EVENTS_SECRET_NAME")"
fi

MEET_ENV="LINK_SOURCE=$LINK_SOURCE,MEET_ACCESS_TYPE=$MEET_ACCESS_TYPE,MEET_ENTRY_POINT_ACCESS=$MEET_ENTRY_POINT_ACCESS"
if [ -n "$MEET_IMPERSONATE_USER" ]; then
    MEET_ENV="$MEET_ENV,MEET_IMPERSONATE_USER=$MEET_IMPERSONATE_USER"
fi
ASSIGN_SECRETS="$DB_SECRET,$MIDTRANS_KEY_SECRET"
if [ -n "$MEET_CREDENTIALS_SECRET" ]; then
    ASSIGN_SECRETS="$ASSIGN_SECRETS,MEET_CREDENTIALS=$(pinned "$MEET_CREDENTIALS_SECRET")"
fi

echo "== $ASSIGN_FUNCTION (private)"
deploy_function "$ASSIGN_FUNCTION" assign_meeting_link "$ASSIGN_SA" "$ASSIGN_MAX_INSTANCES" \
    --no-allow-unauthenticated "$COMMON_ENV,TRUST_CLOUD_RUN_IAM=true,$MIDTRANS_ENV,$MEET_ENV$EVENTS_ENV" \
    "$ASSIGN_SECRETS$EVENTS_SECRET" 0
ASSIGN_URL="$(function_url "$ASSIGN_FUNCTION")"
for invoker in "$WEBHOOK_SA" "$SCHEDULER_SA"; do
    run "${G[@]}" functions add-invoker-policy-binding "$ASSIGN_FUNCTION" --region="$REGION" \
        --member="serviceAccount:$invoker"
done

echo "== $WEBHOOK_FUNCTION (public: Midtrans cannot authenticate; signatures are checked)"
deploy_function "$WEBHOOK_FUNCTION" midtrans_webhook "$WEBHOOK_SA" "$WEBHOOK_MAX_INSTANCES" \
    --allow-unauthenticated \
    "$COMMON_ENV,ASSIGN_MEETING_LINK_URL=$ASSIGN_URL,$MIDTRANS_ENV,MIDTRANS_VERIFY_WITH_STATUS_API=$MIDTRANS_VERIFY_WITH_STATUS_API$EVENTS_ENV" \
    "$DB_SECRET,$MIDTRANS_KEY_SECRET$EVENTS_SECRET" "$WEBHOOK_MIN_INSTANCES"
WEBHOOK_URL="$(function_url "$WEBHOOK_FUNCTION")"

echo "== Sweep schedule"
scheduler_args=(--location="$REGION" --schedule="$SWEEP_SCHEDULE" --uri="$ASSIGN_URL"
    --http-method=POST --message-body='{"sweep": true}' --headers=Content-Type=application/json
    --oidc-service-account-email="$SCHEDULER_SA" --oidc-token-audience="$ASSIGN_URL")
if exists "${G[@]}" scheduler jobs describe "$SWEEP_JOB" --location="$REGION"; then
    run "${G[@]}" scheduler jobs update http "$SWEEP_JOB" "${scheduler_args[@]}"
else
    run "${G[@]}" scheduler jobs create http "$SWEEP_JOB" "${scheduler_args[@]}"
fi

echo "== Alerts"
# Log-based metrics over the functions' JSON log lines, and a policy for each, emailed.
metric() {  # name, description, filter
    if ! exists "${G[@]}" logging metrics describe "$1"; then
        run "${G[@]}" logging metrics create "$1" --description="$2" --log-filter="$3"
    fi
}
policy() {  # display name, metric, comparison, threshold, window s; absent when comparison is ABSENT
    local name="$1" metric_type="logging.googleapis.com/user/$2" file
    if [ "$DRY_RUN" = false ] && [ -n "$("${G[@]}" alpha monitoring policies list \
            --filter="displayName=\"$name\"" --format='value(name)' 2>/dev/null)" ]; then
        return
    fi
    file="$WORK/policy-$2.json"
    local condition
    if [ "$3" = ABSENT ]; then
        condition="\"conditionAbsent\": {\"filter\": \"metric.type=\\\"$metric_type\\\" AND resource.type=\\\"cloud_run_revision\\\"\", \"duration\": \"${5}s\", \"aggregations\": [{\"alignmentPeriod\": \"300s\", \"perSeriesAligner\": \"ALIGN_COUNT\"}]}"
    else
        condition="\"conditionThreshold\": {\"filter\": \"metric.type=\\\"$metric_type\\\" AND resource.type=\\\"cloud_run_revision\\\"\", \"comparison\": \"$3\", \"thresholdValue\": $4, \"duration\": \"0s\", \"aggregations\": [{\"alignmentPeriod\": \"${5}s\", \"perSeriesAligner\": \"ALIGN_SUM\", \"crossSeriesReducer\": \"REDUCE_SUM\"}]}"
    fi
    printf '{"displayName": "%s", "combiner": "OR", "notificationChannels": ["%s"], "conditions": [{"displayName": "%s", %s}]}\n' \
        "$name" "$CHANNEL" "$name" "$condition" > "$file"
    run "${G[@]}" alpha monitoring policies create --policy-from-file="$file"
}
if [ -n "$ALERT_EMAIL" ]; then
    CHANNEL=""
    if [ "$DRY_RUN" = false ]; then
        CHANNEL="$("${G[@]}" beta monitoring channels list --filter="labels.email_address=\"$ALERT_EMAIL\"" \
            --format='value(name)' 2>/dev/null | head -n 1)"
    fi
    if [ -z "$CHANNEL" ]; then
        run "${G[@]}" beta monitoring channels create --display-name="Meeting Links alerts" --type=email \
            --channel-labels="email_address=$ALERT_EMAIL"
        CHANNEL="projects/$PROJECT_ID/notificationChannels/<new>"
        if [ "$DRY_RUN" = false ]; then
            CHANNEL="$("${G[@]}" beta monitoring channels list --filter="labels.email_address=\"$ALERT_EMAIL\"" \
                --format='value(name)' | head -n 1)"
        fi
    fi
    services="resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"$WEBHOOK_FUNCTION\" OR \"$ASSIGN_FUNCTION\")"
    metric meeting_links_pool_exhausted "A paid booking waits for a link to be assigned by hand" \
        "$services AND jsonPayload.message=\"meeting link pool exhausted: booking needs manual assignment\""
    metric meeting_links_invalid_signatures "Notifications refused for a bad signature" \
        "$services AND jsonPayload.error=\"InvalidSignature\""
    metric meeting_links_5xx "Requests the functions answered with a 5xx" "$services AND httpRequest.status>=500"
    metric meeting_links_sweep_runs "Sweeps that ran" "$services AND jsonPayload.message=\"sweep of waiting bookings\""
    policy "Meeting Links: a booking waits for manual assignment" meeting_links_pool_exhausted COMPARISON_GT 0 300
    policy "Meeting Links: burst of invalid signatures" meeting_links_invalid_signatures COMPARISON_GT 20 300
    policy "Meeting Links: functions answering 5xx" meeting_links_5xx COMPARISON_GT 10 300
    policy "Meeting Links: the sweep has not run for 30 minutes" meeting_links_sweep_runs ABSENT 0 1800
else
    echo "ALERT_EMAIL is not set: no alerts are created (README: \"Alerts\")"
fi

echo
echo "Secrets are pinned to the versions above. To rotate one: add a version"
echo "  (printf '%s' \"\$NEW\" | gcloud secrets versions add NAME --data-file=-) and run ./deploy.sh again."
echo "Done. Paste this URL into Midtrans (Settings > Configuration > Payment Notification URL):"
echo "  $WEBHOOK_URL"
