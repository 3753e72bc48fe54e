"""Settings for the test suite: the real settings with tasks run in-process and fast hashing."""

import os

from . import settings as _base
from .settings import *  # noqa: F403

TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
                     "QUEUES": ["default", "connectors", "engines"]}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "zh-hans"

# Each pytest-xdist worker has its own test database, so tenant and object ids repeat between
# workers; Redis keys built from them (behaviour windows, leaderboards, the flash-sale gate, the
# cache) must not meet either. Worker gwN uses database (D - N) of the configured Redis URL.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _base.REDIS_URL and _worker.startswith("gw") and _worker[2:].isdigit():
    from urllib.parse import urlsplit, urlunsplit

    _parts = urlsplit(_base.REDIS_URL)
    _db = (int((_parts.path or "/0").lstrip("/") or 0) - int(_worker[2:])) % 16
    REDIS_URL = urlunsplit(_parts._replace(path=f"/{_db}"))
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CRONTASK = {"REDIS_URL": REDIS_URL}

# The read replica's alias as a TEST MIRROR of the default database (the same rows through a second
# connection), so the router's tests run everywhere; routing stays off unless a test turns it on.
DATABASES = {**_base.DATABASES}
DATABASES["replica"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
SHEQUN_REPLICA_ROUTING = False
