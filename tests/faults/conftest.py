"""Every test here is marked ``faults`` and ``postgres`` (it runs in the PostgreSQL pass of
``scripts/test`` / CI, and alone with ``pytest -m faults``), uses committed data (the processes it
starts read it) and stops what it started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from shequn.commerce import services as commerce
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.members.models import Member

from ._harness import RedisServer, Site, db_url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture
def site(tmp_path: Path, transactional_db: None) -> Iterator[Site]:
    s = Site(tmp_path / "site", db_url())
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path / "redis").start()
    try:
        yield r
    finally:
        r.kill()


class Shop:
    """A tenant with a product, members and an API key (commerce.write, commerce.read)."""

    def __init__(self, n_members: int, stock: int = 100_000) -> None:
        self.tenant = Tenant.objects.create(slug="fault", name="故障演练")
        self.system = Principal.system(self.tenant.pk)
        self.product = commerce.do_create_product(
            self.system, commerce.NewProduct(
                name="19.9 体验装", skus=[{"code": "T-1", "name": "体验装", "price_fen": 1990, "stock": stock}]))
        self.sku = self.product.skus.get()
        now = timezone.now()
        Member.objects.bulk_create([Member(tenant=self.tenant, display_name=f"会员{i}", first_seen_at=now)
                                    for i in range(n_members)])
        self.members = list(Member.objects.filter(tenant=self.tenant).order_by("pk").values_list("pk", flat=True))
        _key, self.token = do_create_api_key(self.system, name="faults", scopes=["*"])

    def flash_sale(self, stock: int, **kw: Any) -> Any:
        now = timezone.now()
        return commerce.do_create_flash_sale(
            self.system, name="秒杀", sku_id=self.sku.pk, price_fen=990, stock=stock,
            starts_at=kw.pop("starts_at", now - timezone.timedelta(minutes=1)),
            ends_at=kw.pop("ends_at", now + timezone.timedelta(hours=1)), **kw)
