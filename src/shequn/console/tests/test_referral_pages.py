"""The referral report and the merchant alliance page: what each merchant sees of shared alliance
rows, who may settle a statement, and that settling books both ledgers exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.core.models import AuditLog, StaffRole, Tenant
from shequn.core.permissions import Principal
from shequn.ledger.services import check_ledger
from shequn.referrals.models import AllianceInvitation, AllianceListing, AllianceMember, AllianceStatement
from shequn.referrals.services import (
    do_build_statement,
    do_create_alliance,
    do_get_or_create_link,
    do_invite_to_alliance,
    do_join_alliance,
    do_list_product,
    on_order_event,
)
from shequn.testing.factories import MemberFactory, StaffFactory, order_line, paid_event

pytestmark = pytest.mark.django_db


def client_for(tenant: Tenant, role: str = StaffRole.OWNER) -> Client:
    c = Client()
    c.force_login(StaffFactory(tenant=tenant, role=role).user)
    return c


@pytest.fixture
def alliance_world(tenant: Tenant) -> dict:
    shop_a, shop_b = tenant, Tenant.objects.create(slug="tea", name="茶饮店")
    outsider = Tenant.objects.create(slug="gym", name="健身房")
    alliance = do_create_alliance(Principal.system(shop_a.pk), name="同城商家联盟")
    do_invite_to_alliance(Principal.system(shop_a.pk), alliance.pk, tenant_slug=shop_b.slug)
    do_join_alliance(Principal.system(shop_b.pk), alliance.pk)
    do_list_product(Principal.system(shop_b.pk), alliance.pk, product_id="milk-tea", title="招牌奶茶", rate_bps=1500,
                    refund_window_days=0)
    alice = MemberFactory(tenant=shop_a, display_name="A店会员")
    link = do_get_or_create_link(Principal.system(shop_a.pk), member_id=alice.pk, campaign="双十一")
    start = timezone.now() - timedelta(minutes=1)
    for i in range(2):
        on_order_event(paid_event(shop_b, MemberFactory(tenant=shop_b, display_name=f"B店顾客{i}"),
                                  [order_line("milk-tea", 2000, "goods")], code=link.code))
    st = do_build_statement(alliance.pk, payer_id=shop_b.pk, payee_id=shop_a.pk, start=start,
                            end=timezone.now() + timedelta(minutes=1))
    return {"a": shop_a, "b": shop_b, "outsider": outsider, "alliance": alliance, "statement": st}


def test_alliance_page_shows_only_own_alliances_and_statements(alliance_world):
    w = alliance_world
    url = reverse("console:alliances")
    page = client_for(w["a"]).get(url).content.decode()
    assert "同城商家联盟" in page and "招牌奶茶" in page and "茶饮店" in page
    assert "6.00" in page  # 15% of 20.00, twice: the statement's total in yuan
    outsider = client_for(w["outsider"]).get(url).content.decode()
    assert "同城商家联盟" not in outsider and "招牌奶茶" not in outsider and "还没有加入任何联盟" in outsider


def test_only_the_payer_settles_and_both_ledgers_balance(alliance_world):
    w = alliance_world
    st = w["statement"]
    url = reverse("console:alliances")
    assert st.total_fen == 600
    # the payee cannot mark what it is owed as paid; an outsider cannot touch it at all
    for who in ("a", "outsider"):
        resp = client_for(w[who]).post(url, {"op": "settle", "statement_id": st.pk}, follow=True)
        assert "结算单不存在或不由你方付款" in resp.content.decode()
    assert AllianceStatement.objects.get(pk=st.pk).settled_at is None
    payer = client_for(w["b"])
    payer.post(url, {"op": "settle", "statement_id": st.pk})
    payer.post(url, {"op": "settle", "statement_id": st.pk})  # a double click settles once
    assert AllianceStatement.objects.get(pk=st.pk).settled_at is not None
    for t in (w["a"], w["b"]):
        assert check_ledger(t.pk).ok
    assert AuditLog.objects.filter(tenant=w["b"], action="referrals.alliance.settle").count() == 2


def test_statements_are_finance_data(alliance_world):
    w = alliance_world
    page = client_for(w["b"], StaffRole.READONLY).get(reverse("console:alliances")).content.decode()
    assert "同城商家联盟" in page and 'id="statements"' not in page
    resp = client_for(w["b"], StaffRole.OPERATOR).post(
        reverse("console:alliances"), {"op": "settle", "statement_id": w["statement"].pk})
    assert resp.status_code == 403
    assert AllianceStatement.objects.get(pk=w["statement"].pk).settled_at is None


def test_create_join_and_list_with_clear_errors(alliance_world):
    w = alliance_world
    url = reverse("console:alliances")
    c = client_for(w["outsider"])
    bad = c.post(url, {"op": "list", "alliance_id": w["alliance"].pk, "product_id": "x", "rate_percent": "10"},
                 follow=True)
    assert "你不是该联盟成员" in bad.content.decode()
    # joining is by invitation and acceptance, never by the alliance's id
    assert "未知操作" in c.post(url, {"op": "join", "alliance_id": w["alliance"].pk}, follow=True).content.decode()
    a = client_for(w["a"])
    assert "没有这个组织代码的商家" in a.post(url, {"op": "invite", "alliance_id": w["alliance"].pk,
                                                 "tenant_slug": "nobody"}, follow=True).content.decode()
    a.post(url, {"op": "invite", "alliance_id": w["alliance"].pk, "tenant_slug": w["outsider"].slug})
    page = c.get(url).content.decode()
    assert "收到的联盟邀请" in page
    inv = AllianceInvitation.objects.get(invitee=w["outsider"])
    c.post(url, {"op": "accept", "invitation_id": inv.pk})
    assert AllianceMember.objects.filter(alliance=w["alliance"], tenant=w["outsider"], is_active=True).exists()
    assert "佣金比例必须是数字" in c.post(url, {"op": "list", "alliance_id": w["alliance"].pk, "product_id": "card",
                                          "rate_percent": "十"}, follow=True).content.decode()
    c.post(url, {"op": "list", "alliance_id": w["alliance"].pk, "product_id": "card", "title": "月卡",
                 "rate_percent": "12.5"})
    listing = AllianceListing.objects.get(tenant=w["outsider"], product_id="card")
    assert listing.rate_bps == 1250
    done = c.post(url, {"op": "create", "name": "健身联盟"}, follow=True).content.decode()
    assert "已创建联盟 健身联盟" in done


def test_referral_report_lists_campaigns_and_top_referrers(alliance_world):
    w = alliance_world
    page = client_for(w["a"]).get(reverse("console:referral_report"), {"period": "month"})
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="kfactor"' in body and 'id="top-referrals"' in body and 'id="top-commission"' in body
    assert client_for(w["a"]).get(reverse("console:referral_report"), {"period": "bogus"}).status_code == 200
