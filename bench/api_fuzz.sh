#!/usr/bin/env bash
# The long schemathesis run of the whole API (issue #12): the same test as the suite's
# src/shequn/api/tests/test_schemathesis.py with many more examples per operation (default 60:
# about 5 minutes on 2 cores). Fails on any 5xx, any schema-violating request accepted and any
# response that does not match its schema. Extra arguments go to pytest.
#   bash bench/api_fuzz.sh
#   SHEQUN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/shequn_fuzz bash bench/api_fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export SHEQUN_HOME="${SHEQUN_HOME:-$(mktemp -d)}"
export SHEQUN_SCHEMATHESIS_EXAMPLES="${SHEQUN_SCHEMATHESIS_EXAMPLES:-60}"
start=$(date +%s)
"$PY" -m pytest -q -n "${SHEQUN_TEST_WORKERS:-2}" src/shequn/api/tests/test_schemathesis.py "$@"
echo "schemathesis: ${SHEQUN_SCHEMATHESIS_EXAMPLES} examples per operation, $(( $(date +%s) - start )) s, no failures"
