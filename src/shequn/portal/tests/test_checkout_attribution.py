"""Issue 12 bug 3 through the portal checkout: the attribution the portal puts on an order always
fits what the order-event listeners store (``commerce.events.ATTRIBUTION_MAX_LENGTH``), so a paid
order's commission can never fail later on it. The ref cookie is only trusted for a code that names
an existing invite link; anything else (forged, over-long) buys without attribution."""

from __future__ import annotations

from django.core.signing import get_cookie_signer
from django.test import Client

from shequn.commerce.events import ATTRIBUTION_MAX_LENGTH
from shequn.commerce.models import Order
from shequn.core.models import DeliveryFailure
from shequn.members.models import Member
from shequn.portal.auth import REF_COOKIE, REF_SALT
from shequn.referrals.models import Commission
from shequn.referrals.services import do_get_or_create_link

from .test_pages import buy_tier, sign_in


def _ref_cookie(client: Client, code: str) -> None:
    client.cookies[REF_COOKIE] = get_cookie_signer(salt=REF_COOKIE + REF_SALT).sign(code)


def test_checkout_with_a_link_code_credits_the_referrer(client, world):
    alice = Member.objects.create(tenant=world.tenant, display_name="阿丽", first_seen_at=world.community.created_at)
    link = do_get_or_create_link(world.system, member_id=alice.pk, community_id=world.community.pk)
    assert len(link.code) <= ATTRIBUTION_MAX_LENGTH["invite_code"]
    sign_in(client, world, "13800001234")
    assert client.get(f"/r/{link.code}").status_code == 200  # the landing remembers the link
    order = buy_tier(client, world, world.entry)
    assert order.attribution["invite_code"] == link.code
    assert Commission.objects.filter(referrer=alice, invite_code=link.code).exists()
    assert not DeliveryFailure.objects.exists()


def test_checkout_with_an_over_long_ref_code_buys_without_it_and_nothing_fails_later(client, world):
    sign_in(client, world, "13800004321")
    _ref_cookie(client, "x" * (ATTRIBUTION_MAX_LENGTH["invite_code"] + 50))
    order = buy_tier(client, world, world.entry)  # paid
    assert Order.objects.get(pk=order.pk).attribution["invite_code"] is None
    assert not DeliveryFailure.objects.exists()
