"""``shequn backup`` / ``shequn restore``: one archive with everything a site needs to come back.

The archive is a gzip'd tar (mode 0600: it holds the keys) with:

* ``manifest.json`` — format, when, which database engine, the shequn version, what is inside;
* ``database.pgdump`` — ``pg_dump --format=custom`` of the PostgreSQL database (no owners or
  grants, so it restores under another role), **or** ``database.sqlite3`` — a consistent copy of the
  SQLite file made with SQLite's online backup API while the site keeps running;
* ``secret_key`` — the SECRET_KEY in force (sessions, signed links, the sandbox payment key and,
  unless FIELD_KEY is set, the key that encrypts connector secrets all derive from it);
* ``field_key`` — ``SHEQUN_FIELD_KEY`` when one is set;
* ``media/…`` — the uploads (``MEDIA_ROOT``).

``restore`` refuses a database that already has shequn's tables unless ``--force`` (PostgreSQL:
the schema emptied and the dump replayed in one transaction; SQLite: the file is replaced), writes the keys to
``$SHEQUN_HOME/secret_key`` / ``$SHEQUN_HOME/field_key`` (0600) and the uploads to ``MEDIA_ROOT``, then
runs ``shequn ledger check`` on the restored books."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

FORMAT = 1
DB_PG = "database.pgdump"
DB_SQLITE = "database.sqlite3"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why (no secret in it)."""


@dataclass
class Manifest:
    format: int
    created_at: str
    vendor: str
    version: str
    database: str
    media_files: int
    has_field_key: bool
    extra: dict[str, Any] = field(default_factory=dict)


def _version() -> str:
    try:
        return metadata.version("shequn")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _pg_env(db: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """libpq arguments (no password on the command line: it goes through PGPASSWORD)."""
    args = ["--host", str(db.get("HOST") or "127.0.0.1"), "--port", str(db.get("PORT") or 5432)]
    if db.get("USER"):
        args += ["--username", str(db["USER"])]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return args, env


def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def dump_database(dest: Path, alias: str = "default") -> str:
    """Write a consistent copy of the database to ``dest``; returns its member name in the archive."""
    db = connections[alias].settings_dict
    if connections[alias].vendor == "postgresql":
        args, env = _pg_env(db)
        _run(["pg_dump", *args, "--format=custom", "--no-owner", "--no-privileges", "--file", str(dest),
              "--dbname", str(db["NAME"])], env)
        return DB_PG
    if connections[alias].vendor == "sqlite":
        connections[alias].ensure_connection()
        source = connections[alias].connection
        target = sqlite3.connect(dest)
        try:
            source.backup(target)  # the online backup API: consistent while writers go on
        finally:
            target.close()
        return DB_SQLITE
    raise BackupError(f"unsupported database engine: {connections[alias].vendor}")


def create_backup(output: Path, alias: str = "default") -> Manifest:
    """Write the archive to ``output`` (atomically: a temporary file renamed at the end)."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    media_root = Path(settings.MEDIA_ROOT)
    field_key = (getattr(settings, "SHEQUN", {}) or {}).get("FIELD_KEY") or ""
    with tempfile.TemporaryDirectory(prefix="shequn-backup-") as tmp:
        db_file = Path(tmp) / "db"
        member = dump_database(db_file, alias)
        media = [p for p in sorted(media_root.rglob("*")) if p.is_file()] if media_root.is_dir() else []
        manifest = Manifest(
            format=FORMAT, created_at=dt.datetime.now(dt.UTC).isoformat(), vendor=connections[alias].vendor,
            version=_version(), database=member, media_files=len(media), has_field_key=bool(field_key),
        )
        partial = output.with_name(output.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, "manifest.json", json.dumps(manifest.__dict__, indent=2).encode())
            tar.add(db_file, arcname=member)
            _add_bytes(tar, "secret_key", str(settings.SECRET_KEY).encode())
            if field_key:
                _add_bytes(tar, "field_key", str(field_key).encode())
            for path in media:
                tar.add(path, arcname=f"media/{path.relative_to(media_root).as_posix()}")
        partial.replace(output)
    return manifest


def read_manifest(tar: tarfile.TarFile) -> Manifest:
    try:
        fh = tar.extractfile("manifest.json")
    except KeyError as exc:
        raise BackupError("not a shequn backup: manifest.json missing") from exc
    assert fh is not None
    data = json.loads(fh.read())
    if data.get("format") != FORMAT:
        raise BackupError(f"backup format {data.get('format')} is not supported (expected {FORMAT})")
    return Manifest(**data)


def database_is_empty(alias: str = "default") -> bool:
    with connections[alias].cursor() as cur:
        return "django_migrations" not in connections[alias].introspection.table_names(cur)


def _safe_members(tar: tarfile.TarFile, prefix: str) -> list[tarfile.TarInfo]:
    out = []
    for m in tar.getmembers():
        if not m.name.startswith(prefix) or not m.isfile():
            continue
        rel = Path(m.name[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts:
            raise BackupError(f"unsafe path in backup: {m.name}")
        out.append(m)
    return out


def _write_secret(path: Path, value: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)


@dataclass
class RestoreResult:
    manifest: Manifest
    media_files: int = 0
    notes: list[str] = field(default_factory=list)


def restore_backup(archive: Path, *, force: bool = False, alias: str = "default") -> RestoreResult:
    """Restore ``archive`` into the configured database, keys into ``$SHEQUN_HOME``, uploads into
    ``MEDIA_ROOT``. The database must be of the engine the backup came from."""
    conn = connections[alias]
    with tarfile.open(archive, mode="r:gz") as tar:
        manifest = read_manifest(tar)
        if manifest.vendor != conn.vendor:
            raise BackupError(f"this backup is of a {manifest.vendor} database; the configured one is {conn.vendor}")
        if not force and not database_is_empty(alias):
            raise BackupError("the target database already has shequn's tables: restore into an empty database, "
                              "or pass --force to replace its contents")
        result = RestoreResult(manifest=manifest)
        with tempfile.TemporaryDirectory(prefix="shequn-restore-") as tmp:
            member = tar.extractfile(manifest.database)
            if member is None:
                raise BackupError(f"{manifest.database} missing from the backup")
            db_file = Path(tmp) / "db"
            with open(db_file, "wb") as fh:
                shutil.copyfileobj(member, fh)
            _restore_database(db_file, force=force, alias=alias)
        home = Path(settings.HOME)
        for name in ("secret_key", "field_key"):
            try:
                fh2 = tar.extractfile(name)
            except KeyError:
                continue
            assert fh2 is not None
            value = fh2.read()
            _write_secret(home / name, value)
            env = "SHEQUN_SECRET_KEY" if name == "secret_key" else "SHEQUN_FIELD_KEY"
            if os.environ.get(env) and os.environ[env].encode() != value:
                result.notes.append(f"{env} is set in the environment and differs from the backup's; "
                                    f"unset it or set it from {home / name}")
            elif name == "field_key":
                result.notes.append(f"set SHEQUN_FIELD_KEY from {home / name} before starting the site")
        media_root = Path(settings.MEDIA_ROOT)
        for m in _safe_members(tar, "media/"):
            dest = media_root / m.name[len("media/"):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            result.media_files += 1
    return result


def _restore_database(db_file: Path, *, force: bool, alias: str) -> None:
    conn = connections[alias]
    db = conn.settings_dict
    if conn.vendor == "postgresql":
        conn.close()
        args, env = _pg_env(db)
        if not force:
            _run(["pg_restore", *args, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                  "--dbname", str(db["NAME"]), str(db_file)], env)
            return
        # --force over a populated database: ``pg_restore --clean`` cannot drop the constraints a
        # partition inherits (the monthly activity partitions), so the schema is emptied and the
        # dump's script replayed by psql — both in one transaction, so a failure changes nothing
        script = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--file", "-", str(db_file)],  # noqa: S603,S607
                                env=env, capture_output=True, check=False)
        if script.returncode != 0:
            raise BackupError(f"pg_restore failed ({script.returncode}): {script.stderr.decode()[-2000:]}")
        proc = subprocess.run(["psql", *args, "--no-psqlrc", "--quiet", "--single-transaction",  # noqa: S603,S607
                               "--set", "ON_ERROR_STOP=1", "--dbname", str(db["NAME"]),
                               "--command", "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;",
                               "--file", "-"], input=script.stdout, env=env, capture_output=True, check=False)
        if proc.returncode != 0:
            raise BackupError(f"psql failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        return
    source = sqlite3.connect(db_file)
    conn.ensure_connection()
    try:
        source.backup(conn.connection)  # replaces every page of the target, in one step
    finally:
        source.close()
