from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from shequn.commerce import batching, services
from shequn.commerce.models import Product
from shequn.communities.models import Community
from shequn.core.permissions import Principal
from shequn.members.models import Member


def make_member(tenant: Any, name: str = "张三", level: int = 0) -> Member:
    return Member.objects.create(tenant=tenant, display_name=name, first_seen_at=timezone.now(),
                                 relationship_level=level)


@pytest.fixture
def member(tenant: Any) -> Member:
    return make_member(tenant)


@pytest.fixture
def friend(tenant: Any) -> Member:
    return make_member(tenant, "李四")


@pytest.fixture
def community(tenant: Any) -> Community:
    return Community.objects.create(tenant=tenant, name="车友会")


@pytest.fixture
def product(system: Principal) -> Product:
    return services.do_create_product(
        system, services.NewProduct(name="车载香薰", skus=[
            {"code": "XX-1", "name": "木质", "price_fen": 9900, "stock": 10},
            {"code": "XX-2", "name": "花香", "price_fen": 5000, "stock": 5},
        ]),
    )


def sku(product: Product, code: str = "XX-1") -> Any:
    return product.skus.get(code=code)


def window(minutes_before: int = 1, minutes_after: int = 60) -> tuple[dt.datetime, dt.datetime]:
    now = timezone.now()
    return now - dt.timedelta(minutes=minutes_before), now + dt.timedelta(minutes=minutes_after)


def pay(system: Principal, order_id: int) -> dict[str, Any]:
    p = services.do_start_payment(system, order_id)
    return services.do_sandbox_pay(p.out_trade_no)


@pytest.fixture(autouse=True)
def _fresh_flash_batching():
    """The group-commit writer threads and their per-process caches never outlive a test."""
    yield
    batching.shutdown()
