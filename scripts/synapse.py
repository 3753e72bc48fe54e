#!/usr/bin/env python3
"""A throwaway Synapse homeserver on 127.0.0.1 for the Matrix end-to-end tests (and for trying the
Matrix connector by hand).

Synapse lives in its own virtualenv (``.synapse/venv``, gitignored) because its dependencies may
clash with shequn's; it is installed from PyPI on first use, once, under a file lock so that two
pytest-xdist workers never install it at the same time. Each caller then starts its own server in a
temporary directory on a free port: SQLite, no federation key servers, rate limits raised, a
registration shared secret for creating users.

    python scripts/synapse.py install          # create .synapse/venv (idempotent)
    python scripts/synapse.py run [--port N]   # run a server in the foreground until Ctrl-C

Standard library only: the test suite imports it by path.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SYNAPSE_VERSION = "1.163.2"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = ROOT / ".synapse"
SERVER_NAME = "localhost"


def _python_for_venv() -> str:
    """A real interpreter (not a venv shim) of the running Python version to build the venv from."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base


def ensure_installed(home: Path = DEFAULT_HOME, *, quiet: bool = True) -> Path:
    """Create ``home/venv`` with matrix-synapse==SYNAPSE_VERSION unless it is already there.
    Returns the venv's python. Safe to call from several processes at once (flock)."""
    home.mkdir(parents=True, exist_ok=True)
    venv = home / "venv"
    python = venv / "bin" / "python"
    marker = venv / f".synapse-{SYNAPSE_VERSION}"
    if marker.exists():
        return python
    with open(home / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists():  # another process finished while we waited
                return python
            if venv.exists():
                shutil.rmtree(venv)
            subprocess.run([_python_for_venv(), "-m", "venv", str(venv)], check=True)  # noqa: S603
            cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                   f"matrix-synapse=={SYNAPSE_VERSION}"]
            if quiet:
                cmd.insert(4, "-q")
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)  # noqa: S603
            marker.write_text(SYNAPSE_VERSION)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return python


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_RATE = {"per_second": 1000, "burst_count": 1000}


def write_config(data_dir: Path, port: int) -> tuple[Path, str]:
    """Write homeserver.yaml (JSON is valid YAML), a log config and a signing key."""
    shared_secret = secrets.token_hex(16)
    key_seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    (data_dir / "signing.key").write_text(f"ed25519 a_test {key_seed}\n")
    log_config = {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                              "filename": str(data_dir / "homeserver.log")}},
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    (data_dir / "log.yaml").write_text(json.dumps(log_config))
    config = {
        "server_name": SERVER_NAME,
        "pid_file": str(data_dir / "homeserver.pid"),
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                       "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
        "database": {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        "log_config": str(data_dir / "log.yaml"),
        "media_store_path": str(data_dir / "media"),
        "signing_key_path": str(data_dir / "signing.key"),
        "registration_shared_secret": shared_secret,
        "enable_registration": False,
        "report_stats": False,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        "rc_message": _RATE,
        "rc_registration": _RATE,
        "rc_login": {"address": _RATE, "account": _RATE, "failed_attempts": _RATE},
        "rc_admin_redaction": _RATE,
        "rc_joins": {"local": _RATE, "remote": _RATE},
        "rc_joins_per_room": _RATE,
        "rc_invites": {"per_room": _RATE, "per_user": _RATE, "per_issuer": _RATE},
        "rc_3pid_validation": _RATE,
        "rc_presence": {"per_user": _RATE},
        "rc_delayed_event_mgmt": _RATE,
        "rc_room_creation": _RATE,
        "rc_reports": _RATE,
    }
    path = data_dir / "homeserver.yaml"
    path.write_text(json.dumps(config, indent=1))
    return path, shared_secret


def _get_json(url: str, data: dict[str, object] | None = None, token: str | None = None,
              timeout: float = 10) -> dict[str, object]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
        result: dict[str, object] = json.loads(resp.read())
        return result


class Synapse:
    """A running homeserver. ``base_url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, home: Path = DEFAULT_HOME, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="shequn-synapse-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.shared_secret = ""

    def start(self, timeout: float = 90) -> Synapse:
        python = ensure_installed(self.home)
        config, self.shared_secret = write_config(self.data_dir, self.port)
        out = open(self.data_dir / "stdout.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(  # noqa: S603
            [str(python), "-m", "synapse.app.homeserver", "-c", str(config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.data_dir, start_new_session=True,
        )
        atexit.register(self.stop)  # never leave a homeserver behind, even when the run is aborted
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"synapse exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                _get_json(f"{self.base_url}/_matrix/client/versions", timeout=2)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"synapse did not answer within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("stdout.log", "homeserver.log"):
            p = self.data_dir / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def register(self, username: str, password: str | None = None, *, admin: bool = False) -> dict[str, str]:
        """Create a user through the shared-secret admin API; returns user_id, access_token, device_id."""
        password = password or secrets.token_hex(8)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce = str(_get_json(url)["nonce"])
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), username.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        result = _get_json(url, {"nonce": nonce, "username": username, "password": password, "admin": admin,
                                 "mac": mac.hexdigest()})
        return {"user_id": str(result["user_id"]), "access_token": str(result["access_token"]),
                "device_id": str(result.get("device_id", "")), "password": password}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"install", "run"}:
        print(__doc__)
        return 2
    if argv[0] == "install":
        print(ensure_installed(quiet=False))
        return 0
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else None
    server = Synapse(port=port).start()
    print(f"synapse on {server.base_url}; shared secret {server.shared_secret}; data {server.data_dir}")
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
