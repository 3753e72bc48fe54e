"""Model factories (factory_boy), one per object a test needs.

Plain rows (tenant, member, identity, tag, community, group, membership, product, SKU, invite link)
are written directly: they are the fixtures a test starts from. Objects whose rules matter to the
test's outcome go through their service, so a factory can never build what the product would
refuse: ``OrderFactory`` prices and stocks through ``do_create_order`` (and pays in the sandbox when
``paid=True``), ``CommissionPlanFactory`` validates its rules through ``do_create_plan``,
``StaffFactory`` creates a console login through ``do_create_operator``.

Every factory takes ``tenant=``; related objects default to the same tenant::

    alice = MemberFactory(tenant=tenant, display_name="阿丽")
    sku = SkuFactory(tenant=tenant, price_fen=9900, stock=3)
    order = OrderFactory(tenant=tenant, member=alice, sku=sku, quantity=2, paid=True)

The referral engine consumes commerce's order events; :func:`paid_event` and :func:`refund_event`
build them (a stand-in of the same shape, :class:`OrderEventData`) without placing an order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone
from factory.base import Factory
from factory.declarations import LazyAttribute, LazyFunction, SelfAttribute, Sequence, SubFactory
from factory.django import DjangoModelFactory

from shequn.commerce.models import Order, Product, ProductKind, Sku
from shequn.commerce.services import do_create_order, do_sandbox_pay, do_start_payment
from shequn.communities.models import ChatGroup, Community, JoinSource, Membership
from shequn.core.models import Platform, StaffMembership, StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.members.models import Identity, Member, Tag
from shequn.referrals.models import CommissionPlan, InviteLink, LinkKind
from shequn.referrals.services import do_create_plan

#: the password of every console login :class:`StaffFactory` creates
STAFF_PASSWORD = "pass-word-123"

_same_tenant = SelfAttribute("..tenant")


class TenantFactory(DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = Sequence(lambda n: f"tenant-{n}")
    name = Sequence(lambda n: f"商户{n}")


class MemberFactory(DjangoModelFactory[Member]):
    class Meta:
        model = Member

    tenant = SubFactory(TenantFactory)
    display_name = Sequence(lambda n: f"会员{n}")
    first_seen_at = LazyFunction(timezone.now)


class IdentityFactory(DjangoModelFactory[Identity]):
    class Meta:
        model = Identity

    tenant = SubFactory(TenantFactory)
    member = SubFactory(MemberFactory, tenant=_same_tenant)
    platform = Platform.TELEGRAM
    external_id = Sequence(lambda n: f"u{n}")


class TagFactory(DjangoModelFactory[Tag]):
    class Meta:
        model = Tag

    tenant = SubFactory(TenantFactory)
    name = Sequence(lambda n: f"标签{n}")


class CommunityFactory(DjangoModelFactory[Community]):
    class Meta:
        model = Community

    tenant = SubFactory(TenantFactory)
    name = Sequence(lambda n: f"社群{n}")


class ChatGroupFactory(DjangoModelFactory[ChatGroup]):
    class Meta:
        model = ChatGroup

    tenant = SubFactory(TenantFactory)
    community = SubFactory(CommunityFactory, tenant=_same_tenant)
    platform = Platform.TELEGRAM
    external_id = Sequence(lambda n: f"-100{n}")
    name = Sequence(lambda n: f"群{n}")


class MembershipFactory(DjangoModelFactory[Membership]):
    """A membership row as history has it (any ``joined_at``/``left_at``); a test of joining itself
    calls ``communities.services.do_join``."""

    class Meta:
        model = Membership

    tenant = SubFactory(TenantFactory)
    member = SubFactory(MemberFactory, tenant=_same_tenant)
    community = SubFactory(CommunityFactory, tenant=_same_tenant)
    group = None
    joined_at = LazyFunction(timezone.now)
    join_source = JoinSource.QR


class ProductFactory(DjangoModelFactory[Product]):
    class Meta:
        model = Product

    tenant = SubFactory(TenantFactory)
    name = Sequence(lambda n: f"商品{n}")
    kind = ProductKind.GOODS


class SkuFactory(DjangoModelFactory[Sku]):
    class Meta:
        model = Sku

    tenant = SubFactory(TenantFactory)
    product = SubFactory(ProductFactory, tenant=_same_tenant)
    code = Sequence(lambda n: f"SKU-{n}")
    name = "默认"
    price_fen = 9900
    stock = 10


class OrderFactory(Factory[Order]):
    """An order placed through ``do_create_order`` (server-side prices, stock taken), paid in the
    sandbox when ``paid=True`` (which emits the ``paid`` order event)."""

    class Meta:
        model = Order

    tenant = SubFactory(TenantFactory)
    member = SubFactory(MemberFactory, tenant=_same_tenant)
    sku = SubFactory(SkuFactory, tenant=_same_tenant)
    quantity = 1
    paid = False

    @classmethod
    def _create(cls, model_class: type[Order], *args: Any, tenant: Tenant, member: Member, sku: Sku,
                quantity: int, paid: bool, **kwargs: Any) -> Order:
        system = Principal.system(tenant.pk)
        order = do_create_order(system, member_id=member.pk, lines=[{"sku_id": sku.pk, "quantity": quantity}],
                                **kwargs)
        if paid:
            do_sandbox_pay(do_start_payment(system, order.pk).out_trade_no)
            order.refresh_from_db()
        return order


class InviteLinkFactory(DjangoModelFactory[InviteLink]):
    """A member's invite link (``member`` is the referrer)."""

    class Meta:
        model = InviteLink

    tenant = SubFactory(TenantFactory)
    kind = LinkKind.MEMBER
    member = SubFactory(MemberFactory, tenant=_same_tenant)
    code = Sequence(lambda n: f"inv{n:05d}")


class CommissionPlanFactory(Factory[CommissionPlan]):
    """A commission plan made through ``do_create_plan``; by default 10 % on every product."""

    class Meta:
        model = CommissionPlan

    tenant = SubFactory(TenantFactory)
    name = Sequence(lambda n: f"佣金方案{n}")
    rules = LazyFunction(lambda: [{"mode": "percent", "rate_bps": 1000}])
    refund_window_days = 0

    @classmethod
    def _create(cls, model_class: type[CommissionPlan], *args: Any, tenant: Tenant, **kwargs: Any) -> CommissionPlan:
        plan, _warnings = do_create_plan(Principal.system(tenant.pk), **kwargs)
        return plan


class StaffFactory(Factory[StaffMembership]):
    """A console login (password :data:`STAFF_PASSWORD`) with a staff role, username
    ``<tenant slug>-<role>`` unless given."""

    class Meta:
        model = StaffMembership

    tenant = SubFactory(TenantFactory)
    role = StaffRole.OWNER
    username = LazyAttribute(lambda o: f"{o.tenant.slug}-{o.role}")
    password = STAFF_PASSWORD
    display_name = LazyAttribute(lambda o: f"{o.tenant.name} {o.role}")

    @classmethod
    def _create(cls, model_class: type[StaffMembership], *args: Any, **kwargs: Any) -> StaffMembership:
        return do_create_operator(**kwargs)


# --- order events (what commerce emits and the referral engine consumes) --------------------------

_order_ids = itertools.count(1)


@dataclass(frozen=True)
class OrderEventData:
    """The shape of ``commerce.events.OrderEventData``, built without placing an order."""

    tenant_id: int
    event_id: str
    kind: str
    order_id: int
    member_id: int | None
    amount_fen: int
    lines: list[dict[str, Any]]
    attribution: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=timezone.now)


def order_line(product_id: str, amount_fen: int, kind: str = "tier", qty: int = 1,
               line_id: str | None = None) -> dict[str, Any]:
    """One line of an order event (``product_id`` doubles as the SKU id)."""
    return {"order_line_id": line_id or f"L{next(_order_ids)}", "product_id": product_id, "sku_id": product_id,
            "product_kind": kind, "quantity": qty, "amount_fen": amount_fen}


def paid_event(tenant: Tenant, buyer: Member | None, lines: list[dict[str, Any]], *, code: str = "",
               referrer: Member | None = None, event_id: str | None = None, order_id: int | None = None,
               at: datetime | None = None, community_id: int | None = None, campaign: str = "") -> OrderEventData:
    """The ``paid`` event of an order of ``lines`` by ``buyer``, attributed to an invite ``code``
    and/or a ``referrer``."""
    oid = order_id or next(_order_ids)
    return OrderEventData(
        tenant_id=tenant.pk, event_id=event_id or f"paid-{oid}", kind="paid", order_id=oid,
        member_id=buyer.pk if buyer else None, amount_fen=sum(li["amount_fen"] for li in lines), lines=lines,
        attribution={"invite_code": code, "referrer_member_id": referrer.pk if referrer else None,
                     "community_id": community_id, "group_id": None, "live_session_id": None,
                     "campaign": campaign},
        occurred_at=at or timezone.now(),
    )


def refund_event(event: OrderEventData, lines: list[dict[str, Any]] | None = None, event_id: str | None = None,
                 at: datetime | None = None) -> OrderEventData:
    """The ``refunded`` event of a paid ``event`` (all its lines unless ``lines`` says which)."""
    return OrderEventData(
        tenant_id=event.tenant_id, event_id=event_id or f"refund-{event.order_id}", kind="refunded",
        order_id=event.order_id, member_id=event.member_id, amount_fen=event.amount_fen,
        lines=event.lines if lines is None else lines, attribution=event.attribution,
        occurred_at=at or timezone.now(),
    )
