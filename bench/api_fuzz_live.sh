#!/usr/bin/env bash
# The 5-minute schemathesis run of issue #12 against a LIVE server (gunicorn via `shequn serve`) on the
# database and Redis of the environment: a demo tenant is seeded (real ids for the fuzzer to hit), an
# API key with every scope except connectors.write (platform APIs on external hosts) is minted with
# `shequn apikey create`, and `schemathesis run` spends --max-time on the whole schema with the
# checks the suite's test uses. Exits non-zero on any failure (5xx, schema-violating request
# accepted, response not matching its schema, undeclared status, wrong content type).
#   SHEQUN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/shequn_fuzz \
#   SHEQUN_REDIS_URL=redis://127.0.0.1:6379/1 bash bench/api_fuzz_live.sh [seconds, default 300]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHEQUN_BIN:-.venv/bin}
SECONDS_BUDGET=${1:-300}
PORT=${SHEQUN_FUZZ_PORT:-8712}
export SHEQUN_HOME="${SHEQUN_HOME:-$(mktemp -d)}"
export DJANGO_SETTINGS_MODULE=shequn.settings
"$BIN/shequn" demo --no-serve --members "${SHEQUN_FUZZ_MEMBERS:-300}" >"$SHEQUN_HOME/demo.log" 2>&1 \
    || echo "demo seeding stopped early (see $SHEQUN_HOME/demo.log); fuzzing the tenant as far as it was seeded" >&2
SCOPES=$("$BIN/python" -c "
import django; django.setup()
from shequn.core.permissions import ALL
print(' '.join(sorted(ALL - {'connectors.write'})))")
SECRET=$("$BIN/shequn" apikey create --tenant demo --name fuzz --scopes $SCOPES 2>/dev/null)
# the coverage phase sends missing and garbage keys: without this the API-key throttle (30 failures
# per address in 10 minutes, core.throttle) would answer 429 to the good key for the rest of the run
SHEQUN_API_KEY_FAILURES=${SHEQUN_API_KEY_FAILURES:-1000000} "$BIN/shequn" serve --port "$PORT" --workers 2 --no-control-socket >"$SHEQUN_HOME/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
# the schema is fetched once by the script (its generation can take longer than schemathesis's
# 10-second read timeout on a loaded machine), then fuzzed against the live server
for _ in $(seq 120); do
    curl -sf --max-time 120 -o "$SHEQUN_HOME/openapi.json" "http://127.0.0.1:$PORT/api/v1/openapi.json" && break
    sleep 1
done
start=$(date +%s)
set +e
"$BIN/schemathesis" run "$SHEQUN_HOME/openapi.json" --url "http://127.0.0.1:$PORT" \
    -H "Authorization: Bearer $SECRET" --max-time "$SECONDS_BUDGET" --workers 2 --request-timeout 60 \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --report junit --report-dir "$SHEQUN_HOME/report" --seed "${SHEQUN_FUZZ_SEED:-20261204}" \
    --suppress-health-check all
rc=$?
set -e
echo "schemathesis $("$BIN/schemathesis" --version | awk '{print $NF}'): $(( $(date +%s) - start )) s, exit $rc;" \
     "server log: $SHEQUN_HOME/serve.log, report: $SHEQUN_HOME/report"
exit $rc
