#!/usr/bin/env bash
# Deploys both functions to Google Cloud Functions (2nd gen), applies the migrations, and
# schedules the reconciliation sweep. Safe to run again: what is already in place is left
# alone (a function whose bundle and settings are unchanged is not redeployed).
#
#   ./deploy.sh [--dry-run] [--config FILE]
#
# Settings come from the environment or from FILE (default ./deploy.env if it exists),
# a file of VAR=value lines. README.md ("Deploying") lists every setting and its default.
set -euo pipefail

DRY_RUN=false
CONFIG_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=true ;;
        --config) CONFIG_FILE="${2:?--config needs a file}"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
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
DB_NAME="${DB_NAME:-meeting_links}"
DB_USER="${DB_USER:-meeting_links_app}"
DB_PASSWORD_SECRET="${DB_PASSWORD_SECRET:-meeting-links-db-password}"
MIDTRANS_SECRET="${MIDTRANS_SECRET:-midtrans-server-key}"
SECRET_VERSION="${SECRET_VERSION:-latest}"
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
    cloudscheduler.googleapis.com

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

# Only the assign function (and its sweep) talks to the Meet API.
if [ -n "$MEET_CREDENTIALS_SECRET" ]; then
    run "${G[@]}" secrets add-iam-policy-binding "$MEET_CREDENTIALS_SECRET" --member="serviceAccount:$ASSIGN_SA" \
        --role=roles/secretmanager.secretAccessor
fi

echo "== Migrations"
if [ -n "$DEPLOY_DATABASE_URL" ]; then
    printf '+ DATABASE_URL=<redacted> %s\n' "$MIGRATE"
    if [ "$DRY_RUN" = false ]; then
        DATABASE_URL="$DEPLOY_DATABASE_URL" BUSINESS_TIME_ZONE="$BUSINESS_TIME_ZONE" \
            LINK_BUFFER_MINUTES="$LINK_BUFFER_MINUTES" "${MIGRATE_CMD[@]}"
    fi
else
    printf '+ INSTANCE_CONNECTION_NAME=%s DB_USER=%s DB_NAME=%s DB_PASS=<from %s> %s\n' \
        "$INSTANCE_CONNECTION_NAME" "$DB_USER" "$DB_NAME" "$DB_PASSWORD_SECRET" "$MIGRATE"
    if [ "$DRY_RUN" = false ]; then
        DB_PASS="$("${G[@]}" secrets versions access "$SECRET_VERSION" --secret="$DB_PASSWORD_SECRET")" \
            INSTANCE_CONNECTION_NAME="$INSTANCE_CONNECTION_NAME" DB_USER="$DB_USER" DB_NAME="$DB_NAME" \
            BUSINESS_TIME_ZONE="$BUSINESS_TIME_ZONE" LINK_BUFFER_MINUTES="$LINK_BUFFER_MINUTES" "${MIGRATE_CMD[@]}"
    fi
fi

# A function's bundle: its main.py, the shared library and the runtime requirements,
# copied (the upload does not follow symlinks) into a folder of its own.
stage() {
    local name="$1" dir="$REPO/.deploy/$1"
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
    local function="$1" entry="$2" sa="$3" max_instances="$4" access="$5" env="$6" secrets="$7"
    local dir="$REPO/.deploy/$entry" hash current
    stage "$entry"
    hash="$(fingerprint "$dir" "$RUNTIME" "$sa" "$max_instances" "$access" "$env" "$secrets" \
        "$MEMORY" "$CPU" "$CONCURRENCY" "$FUNCTION_TIMEOUT")"
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
        --min-instances=0 --max-instances="$max_instances" --timeout="$FUNCTION_TIMEOUT" \
        --set-env-vars="$env" --set-secrets="$secrets" --update-labels="bundle-hash=$hash"
}

function_url() {
    if [ "$DRY_RUN" = true ]; then
        echo "https://$1-<hash>-$REGION.a.run.app"
    else
        "${G[@]}" functions describe "$1" --region="$REGION" --format='value(serviceConfig.uri)'
    fi
}

COMMON_ENV="INSTANCE_CONNECTION_NAME=$INSTANCE_CONNECTION_NAME,DB_USER=$DB_USER,DB_NAME=$DB_NAME"
COMMON_ENV="$COMMON_ENV,DB_POOL_SIZE=$DB_POOL_SIZE,THREADS=$CONCURRENCY,GOOGLE_CLOUD_PROJECT=$PROJECT_ID"
DB_SECRET="DB_PASS=$DB_PASSWORD_SECRET:$SECRET_VERSION"
MIDTRANS_ENV="MIDTRANS_IS_PRODUCTION=$MIDTRANS_IS_PRODUCTION"
MIDTRANS_KEY_SECRET="MIDTRANS_SERVER_KEY=$MIDTRANS_SECRET:$SECRET_VERSION"

MEET_ENV="LINK_SOURCE=$LINK_SOURCE,MEET_ACCESS_TYPE=$MEET_ACCESS_TYPE,MEET_ENTRY_POINT_ACCESS=$MEET_ENTRY_POINT_ACCESS"
if [ -n "$MEET_IMPERSONATE_USER" ]; then
    MEET_ENV="$MEET_ENV,MEET_IMPERSONATE_USER=$MEET_IMPERSONATE_USER"
fi
ASSIGN_SECRETS="$DB_SECRET,$MIDTRANS_KEY_SECRET"
if [ -n "$MEET_CREDENTIALS_SECRET" ]; then
    ASSIGN_SECRETS="$ASSIGN_SECRETS,MEET_CREDENTIALS=$MEET_CREDENTIALS_SECRET:$SECRET_VERSION"
fi

echo "== $ASSIGN_FUNCTION (private)"
deploy_function "$ASSIGN_FUNCTION" assign_meeting_link "$ASSIGN_SA" "$ASSIGN_MAX_INSTANCES" \
    --no-allow-unauthenticated "$COMMON_ENV,TRUST_CLOUD_RUN_IAM=true,$MIDTRANS_ENV,$MEET_ENV" \
    "$ASSIGN_SECRETS"
ASSIGN_URL="$(function_url "$ASSIGN_FUNCTION")"
for invoker in "$WEBHOOK_SA" "$SCHEDULER_SA"; do
    run "${G[@]}" functions add-invoker-policy-binding "$ASSIGN_FUNCTION" --region="$REGION" \
        --member="serviceAccount:$invoker"
done

echo "== $WEBHOOK_FUNCTION (public: Midtrans cannot authenticate; signatures are checked)"
deploy_function "$WEBHOOK_FUNCTION" midtrans_webhook "$WEBHOOK_SA" "$WEBHOOK_MAX_INSTANCES" \
    --allow-unauthenticated \
    "$COMMON_ENV,ASSIGN_MEETING_LINK_URL=$ASSIGN_URL,$MIDTRANS_ENV,MIDTRANS_VERIFY_WITH_STATUS_API=$MIDTRANS_VERIFY_WITH_STATUS_API" \
    "$DB_SECRET,$MIDTRANS_KEY_SECRET"
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

echo
echo "Done. Paste this URL into Midtrans (Settings > Configuration > Payment Notification URL):"
echo "  $WEBHOOK_URL"
