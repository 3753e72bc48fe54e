"""Staff roles and API-key scopes map onto one set of permission strings.

A permission is ``<area>.<verb>``; ``verb`` is ``read`` or ``write``. Role → permissions is fixed
here so that the console and the API enforce the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import StaffRole

AREAS = (
    "members", "communities", "activity", "audit", "connectors", "moderation", "engagement",
    "commerce", "referrals", "finance", "analytics", "settings", "staff",
)

ALL = frozenset(f"{a}.{v}" for a in AREAS for v in ("read", "write"))
READ_ALL = frozenset(p for p in ALL if p.endswith(".read"))


def _w(*areas: str) -> frozenset[str]:
    return frozenset(f"{a}.write" for a in areas)


ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    StaffRole.OWNER: ALL,
    StaffRole.OPERATOR: READ_ALL
    | _w("members", "communities", "activity", "connectors", "moderation", "engagement", "commerce",
         "referrals"),
    StaffRole.CUSTOMER_SERVICE: READ_ALL - {"finance.read", "staff.read", "settings.read"}
    | _w("members", "moderation", "engagement"),
    StaffRole.CONTENT: READ_ALL - {"finance.read", "staff.read", "settings.read"} | _w("engagement"),
    StaffRole.FINANCE: READ_ALL | _w("finance", "commerce"),
    StaffRole.READONLY: READ_ALL - {"finance.read", "staff.read", "settings.read"},
}


def permissions_for_role(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def expand_scopes(scopes: list[str]) -> frozenset[str]:
    """API-key scopes: ``*``, ``<area>.read``, ``<area>.write`` (write implies read)."""
    out: set[str] = set()
    for scope in scopes:
        if scope == "*":
            return ALL
        if scope in ALL:
            out.add(scope)
            if scope.endswith(".write"):
                out.add(scope.replace(".write", ".read"))
    return frozenset(out)


@dataclass(frozen=True)
class Principal:
    """Who is acting, for which tenant, with which permissions."""

    tenant_id: int
    kind: str  # "staff" | "api_key" | "system" | "member"
    actor_id: str
    label: str
    permissions: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @classmethod
    def system(cls, tenant_id: int, label: str = "system") -> Principal:
        return cls(tenant_id=tenant_id, kind="system", actor_id="", label=label, permissions=ALL)
