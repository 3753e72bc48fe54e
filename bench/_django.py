"""Set up Django for a benchmark on a throw-away database: SQLite in a temp dir, or PostgreSQL."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def setup(db: str, name: str = "shequn_bench") -> str:
    """``db`` is ``sqlite`` or a postgres URL whose database is dropped and recreated."""
    if db == "sqlite":
        os.environ["SHEQUN_HOME"] = tempfile.mkdtemp(prefix="shequn-bench-")
        os.environ.pop("SHEQUN_DATABASE_URL", None)
        label = "SQLite (WAL)"
    else:
        import dj_database_url
        import psycopg

        cfg = dj_database_url.parse(db)
        dbname = cfg["NAME"] or name
        admin = psycopg.connect(host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], dbname="postgres",
                                autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{dbname}"')
        admin.close()
        os.environ["SHEQUN_DATABASE_URL"] = db
        os.environ.setdefault("SHEQUN_HOME", tempfile.mkdtemp(prefix="shequn-bench-"))
        label = "PostgreSQL"
    os.environ["DJANGO_SETTINGS_MODULE"] = "shequn.settings"
    os.environ.setdefault("SHEQUN_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return label
