#!/usr/bin/env bash
# Bring the English catalogs up to date with the source, then compile them.
#
#   scripts/i18n.sh     extract (makemessages -l en), compile, list what still needs English
#
# shequn's msgids are Chinese (the source language); the English for every app lives in
# src/shequn/locale/en/LC_MESSAGES/django.po (LOCALE_PATHS; shequn's makemessages override sends
# all strings there). console/locale/zh_Hans holds Chinese for unfold's English strings and is
# not touched here.
# After a run, fill in the entries it lists (an empty msgstr, or "#, fuzzy": msgmerge guessed the
# English from a similar msgid; check it and delete the fuzzy flag), run it again to compile, and
# commit the .po and .mo files. src/shequn/core/tests/test_i18n.py fails until nothing is listed.
# Needs GNU gettext (xgettext, msgmerge, msgfmt, msgattrib).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export SHEQUN_HOME="${SHEQUN_HOME:-$(mktemp -d)}"
CATALOGS=(locale/en/LC_MESSAGES/django.po)

cd "$ROOT/src/shequn"
"$PY" -m django makemessages --settings=shequn.settings -l en --no-obsolete \
  -i "*/tests/*" -i "*/migrations/*" --verbosity 0
"$PY" -m django compilemessages --settings=shequn.settings -l en --verbosity 0

status=0
for po in "${CATALOGS[@]}"; do
  printf '%s: ' "src/shequn/$po"
  msgfmt --check-format --statistics -o /dev/null "$po" 2>&1
  todo=$( { msgattrib --untranslated --no-wrap "$po"; msgattrib --only-fuzzy --no-wrap "$po"; } \
          | grep -E '^msgid "(.+)"$' | sed -E 's/^msgid "(.*)"$/  \1/' || true)
  if [ -n "$todo" ]; then
    echo "needs English (or review of a fuzzy guess):"
    echo "$todo"
    status=1
  fi
done
exit $status
