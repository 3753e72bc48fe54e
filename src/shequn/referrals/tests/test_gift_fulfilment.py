"""The fission gift reward as a fulfilment queue: reaching the threshold queues a shipment waiting
for the member's address; staff ship it from the console (carrier, tracking number, who and when,
audited) or cancel it; every step refuses what does not fit its state, naming the field."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from shequn.core.errors import Conflict, Forbidden, Invalid, NotFound
from shequn.core.models import AuditLog
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.referrals.models import FissionTask, GiftShipment
from shequn.referrals.services import (
    do_cancel_gift,
    do_create_plan,
    do_get_or_create_link,
    do_set_gift_address,
    do_ship_gift,
    on_order_event,
)
from shequn.testing.factories import MemberFactory, order_line, paid_event


def _earn_gift(tenant, name="A"):
    do_create_plan(Principal.system(tenant.pk), name="p", refund_window_days=0, rules=[{"rate_bps": 1000}])
    FissionTask.objects.create(tenant=tenant, name="邀 2 人送保温杯", threshold=2, reward_kind="gift",
                               reward_note="定制保温杯")
    a = MemberFactory(tenant=tenant, display_name=name)
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=a.pk)
    for i in range(3):
        on_order_event(paid_event(tenant, MemberFactory(tenant=tenant, display_name=f"x{i}"),
                                  [order_line("g", 1000, "goods")], code=link.code))
    return a


def test_gift_reward_goes_through_the_fulfilment_queue(tenant):
    a = _earn_gift(tenant)
    s = GiftShipment.objects.get(member=a)  # once, although a third referral came in
    assert (s.gift, s.status) == ("定制保温杯", "awaiting_address")
    with pytest.raises(Conflict):  # no address yet
        do_ship_gift(Principal.system(tenant.pk), s.pk, carrier="顺丰", tracking_no="SF123")
    with pytest.raises(Invalid) as exc:
        do_set_gift_address(tenant.pk, s.pk, member_id=a.pk, recipient="阿强", phone="12", address="上海市浦东新区")
    assert exc.value.details["field"] == "phone"
    with pytest.raises(NotFound):  # another member cannot set it
        do_set_gift_address(tenant.pk, s.pk, member_id=a.pk + 999, recipient="x", phone="13800138000",
                            address="上海市浦东新区")
    s = do_set_gift_address(tenant.pk, s.pk, member_id=a.pk, recipient="阿强", phone="13800138000",
                            address="上海市浦东新区世纪大道 100 号")
    assert s.status == "to_ship"
    with pytest.raises(Invalid) as exc:
        do_ship_gift(Principal.system(tenant.pk), s.pk, carrier="顺丰", tracking_no=" ")
    assert exc.value.details["field"] == "tracking_no"
    readonly = Principal(tenant_id=tenant.pk, kind="staff", actor_id="9", label="只读",
                         permissions=frozenset({"referrals.read"}))
    with pytest.raises(Forbidden):
        do_ship_gift(readonly, s.pk, carrier="顺丰", tracking_no="SF123")
    s = do_ship_gift(Principal.system(tenant.pk), s.pk, carrier="顺丰", tracking_no="SF1234567890")
    assert s.status == "shipped" and s.shipped_at is not None and s.shipped_by
    assert AuditLog.objects.filter(action="referrals.gift.ship").exists()
    with pytest.raises(Conflict):
        do_set_gift_address(tenant.pk, s.pk, member_id=a.pk, recipient="阿强", phone="13800138000",
                            address="北京市朝阳区")
    with pytest.raises(Conflict):
        do_cancel_gift(Principal.system(tenant.pk), s.pk, reason="重复")


def test_cancel_needs_a_reason(tenant):
    a = _earn_gift(tenant)
    s = GiftShipment.objects.get(member=a)
    with pytest.raises(Invalid):
        do_cancel_gift(Principal.system(tenant.pk), s.pk, reason="")
    assert do_cancel_gift(Principal.system(tenant.pk), s.pk, reason="会员放弃").status == "cancelled"


def test_console_ships_with_carrier_and_tracking_and_masks_the_phone(tenant):
    a = _earn_gift(tenant)
    s = GiftShipment.objects.get(member=a)
    do_set_gift_address(tenant.pk, s.pk, member_id=a.pk, recipient="阿强", phone="13800138000",
                        address="上海市浦东新区世纪大道 100 号")
    do_create_operator(tenant=tenant, username="op", password="pw-123456", role="operator")
    c = Client()
    assert c.login(username="op", password="pw-123456")
    listing = c.get(reverse("admin:referrals_giftshipment_changelist") + "?status=to_ship").content.decode()
    assert "定制保温杯" in listing and "138****8000" in listing and "13800138000" not in listing
    url = reverse("admin:referrals_giftshipment_change", args=[s.pk])
    r = c.post(url, {"carrier": "顺丰", "tracking_no": ""})
    assert r.status_code == 200 and r.context["adminform"].form.errors.get("tracking_no")
    r = c.post(url, {"carrier": "顺丰", "tracking_no": "SF1234567890"})
    assert r.status_code == 302
    s.refresh_from_db()
    assert (s.status, s.tracking_no) == ("shipped", "SF1234567890") and s.shipped_by
