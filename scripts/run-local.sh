#!/usr/bin/env bash
# `make run`: a local PostgreSQL unless GCLEANER_DATABASE_URL is set, migrations, a fresh API
# token, a ready-to-paste curl example, then `gcleaner serve` on 127.0.0.1:8080 with one worker.
# Expects target/release/gcleaner to be built.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${GCLEANER_BIN:-$ROOT/target/release/gcleaner}"
cd "$ROOT"

if [[ -z "${GCLEANER_DATABASE_URL:-}" ]]; then
    GCLEANER_DATABASE_URL="$(scripts/local-postgres.sh start | tail -n 1)"
fi
export GCLEANER_DATABASE_URL
export GCLEANER_DATA_DIR="${GCLEANER_DATA_DIR:-$ROOT/.run/data}"
export GCLEANER_BIND="${GCLEANER_BIND:-127.0.0.1:8080}"
export GCLEANER_WORKERS="${GCLEANER_WORKERS:-1}"

"$BIN" migrate
"$BIN" token disable --name make-run >/dev/null
TOKEN="$("$BIN" token create --name make-run --tenant local | tail -n 1)"
mkdir -p .run
printf '%s\n' "$TOKEN" > .run/api-token
chmod 600 .run/api-token

MODEL="${SAMPLE_MODEL:-model.safetensors}"
DATA="${SAMPLE_DATA:-clean-sample.json}"
BASE="http://$GCLEANER_BIND"
cat <<MSG

gcleaner is starting on $BASE (database: $GCLEANER_DATABASE_URL)
API token (also in .run/api-token):
  export GCLEANER_TOKEN=$TOKEN

Submit a job, follow it, fetch the results:
  curl -sS -H "Authorization: Bearer \$GCLEANER_TOKEN" -F model=@$MODEL -F data=@$DATA $BASE/v1/jobs
  (add -F eval=@ATTACK.tgz, a tar.gz of a \`gcleaner attack\` directory, for the true ASR in the report)
  curl -sS -N -H "Authorization: Bearer \$GCLEANER_TOKEN" $BASE/v1/jobs/JOB_ID/events
  curl -sS -H "Authorization: Bearer \$GCLEANER_TOKEN" -o purified.safetensors $BASE/v1/jobs/JOB_ID/model
  curl -sS -H "Authorization: Bearer \$GCLEANER_TOKEN" $BASE/v1/jobs/JOB_ID/report

MSG
exec "$BIN" serve
