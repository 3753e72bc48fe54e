"""A Django test client for the REST API: sends an API key and JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client


class ApiClient:
    """A Django test client that sends an API key and JSON bodies."""

    def __init__(self, secret: str | None = None, *, language: str | None = None, client: Client | None = None):
        self.client = client or Client()
        self.headers: dict[str, str] = {}
        if secret:
            self.headers["Authorization"] = f"Bearer {secret}"
        if language:
            self.headers["Accept-Language"] = language

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> Any:
        hdrs = {**self.headers, **(headers or {})}
        fn = getattr(self.client, method.lower())
        if body is not None and method.upper() in ("POST", "PATCH", "PUT", "DELETE"):
            return fn(path, data=json.dumps(body), content_type="application/json", headers=hdrs, **kwargs)
        if body is not None:
            return fn(path, data=body, headers=hdrs, **kwargs)
        return fn(path, headers=hdrs, **kwargs)

    def get(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.request("GET", path, params, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, body if body is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)
