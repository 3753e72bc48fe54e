"""Settings for the test suite: the real settings with tasks run in-process and fast hashing."""

from .settings import *  # noqa: F403

TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
                     "QUEUES": ["default", "connectors", "engines"]}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "zh-hans"
