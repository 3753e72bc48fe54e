"""``shequn backup`` / ``shequn restore``: a backup restored into a fresh database gives back the same
books (the ledger check passes on them), the keys and the uploads; a backup of books that do not
balance is restored too, and the check after it fails loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from shequn.core.backup import BackupError, create_backup, restore_backup
from shequn.core.models import Tenant
from shequn.ledger.models import Account, Entry
from shequn.ledger.services import check_ledger, do_post, get_account

SRC = Path(__file__).resolve().parents[2].parent


def _books(tenant_id: int, n: int = 5) -> None:
    src = get_account(tenant_id, "merchant", tenant_id, "commission_expense", allow_negative=True)
    for i in range(n):
        dest = get_account(tenant_id, "member", i + 1, "available")
        do_post(tenant_id, f"backup-{i}", "commission", [(src, -(100 + i)), (dest, 100 + i)])


def _env(home: Path, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHEQUN_", "PYTEST_")) and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(SRC), SHEQUN_HOME=str(home), DJANGO_SETTINGS_MODULE="shequn.settings")
    if db_url:
        env["SHEQUN_DATABASE_URL"] = db_url
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shequn.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _pg_url(name: str) -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{name}"


def _admin() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                           password=s.get("PASSWORD") or None, dbname="postgres", autocommit=True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pg_backup_restores_into_a_fresh_database_with_balanced_books(tmp_path: Path, settings: Any) -> None:
    tenant = Tenant.objects.create(slug="bk", name="备份")
    _books(tenant.pk)
    media = tmp_path / "home1" / "media"
    (media / "posters").mkdir(parents=True)
    (media / "posters" / "海报.png").write_bytes(b"\x89PNG fake")
    source_url = _pg_url(connection.settings_dict["NAME"])
    env1 = _env(tmp_path / "home1", source_url) | {"SHEQUN_SECRET_KEY": "the-site-key-" + "x" * 40}
    archive = tmp_path / "site.tar.gz"
    out = _cli(env1, "backup", "--output", str(archive))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(archive) and oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "database.pgdump", "secret_key", "media/posters/海报.png"} <= names

    fresh = connection.settings_dict["NAME"] + "_restored"
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{fresh}"')
        admin.execute(f'CREATE DATABASE "{fresh}"')
    try:
        env2 = _env(tmp_path / "home2", _pg_url(fresh))
        out = _cli(env2, "restore", str(archive))
        assert out.returncode == 0, out.stderr
        assert "bk: ok — 5 transactions, 0 unbalanced" in out.stdout
        assert (tmp_path / "home2" / "secret_key").read_text() == env1["SHEQUN_SECRET_KEY"]
        assert (tmp_path / "home2" / "media" / "posters" / "海报.png").read_bytes() == b"\x89PNG fake"
        with psycopg.connect(_pg_url(fresh)) as c:
            restored = c.execute("SELECT count(*), sum(abs(amount_fen)) FROM ledger_entry").fetchone()
        assert restored == (Entry.objects.count(), sum(abs(e.amount_fen) for e in Entry.objects.all()))

        # a second restore into the now populated database is refused without --force
        out = _cli(env2, "restore", str(archive))
        assert out.returncode == 1 and "already has shequn's tables" in out.stderr

        # books that do not balance are restored as they are, and the check says so (exit 1)
        Account.objects.filter(owner_id=1, kind="available").update(balance_fen=999_999)
        assert _cli(env1, "backup", "--output", str(archive)).returncode == 0
        out = _cli(env2, "restore", "--force", str(archive))
        assert out.returncode == 1, out.stdout
        assert "bk: NOT BALANCED" in out.stdout and "1 balance mismatches" in out.stdout
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


@pytest.mark.django_db(transaction=True)
def test_sqlite_backup_uses_the_online_api_and_restores_into_a_fresh_file(tmp_path: Path, settings: Any) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite pass")
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.txt").write_text("上传")
    tenant = Tenant.objects.create(slug="bk", name="备份")
    _books(tenant.pk, 3)
    archive = tmp_path / "b.tar.gz"
    manifest = create_backup(archive)  # the test database is in memory: only the backup API can copy it
    assert manifest.vendor == "sqlite" and manifest.database == "database.sqlite3" and manifest.media_files == 1

    # into a fresh file database, through the command line, as an operator would
    home = tmp_path / "fresh"
    out = _cli(_env(home, None), "restore", str(archive))
    assert out.returncode == 0, out.stderr
    assert "bk: ok — 3 transactions" in out.stdout
    assert (home / "media" / "a.txt").read_text() == "上传"

    # in place: the database goes back to the moment of the backup
    Tenant.objects.create(slug="later", name="之后")
    with pytest.raises(BackupError, match="already has shequn's tables"):
        restore_backup(archive)
    restore_backup(archive, force=True)
    assert not Tenant.objects.filter(slug="later").exists()
    assert Entry.objects.count() == 6 and check_ledger(tenant.pk).ok


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    bogus = tmp_path / "x.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        (tmp_path / "f").write_text("x")
        tar.add(tmp_path / "f", arcname="f")
    with pytest.raises(CommandError, match=r"manifest\.json missing"):
        call_command("restore", str(bogus))
    with pytest.raises(CommandError, match="no such file"):
        call_command("restore", str(tmp_path / "missing.tar.gz"))
