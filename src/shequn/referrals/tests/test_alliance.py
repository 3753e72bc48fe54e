from __future__ import annotations

from datetime import timedelta

from django.db.models import Sum
from django.utils import timezone

from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.ledger.models import Entry
from shequn.ledger.services import check_ledger
from shequn.referrals.models import AllianceStatement, Commission
from shequn.referrals.services import (
    do_build_statement,
    do_create_alliance,
    do_get_or_create_link,
    do_invite_to_alliance,
    do_join_alliance,
    do_list_product,
    do_settle_statement,
    merchant_account,
    on_order_event,
)
from shequn.testing.factories import MemberFactory, order_line, paid_event, refund_event
from shequn.testing.scenarios import member_balance


def test_alliance_commission_paid_by_the_seller_and_statement_matches_entries(tenant):
    shop_a = tenant
    shop_b = Tenant.objects.create(slug="tea", name="茶饮店")
    alliance = do_create_alliance(Principal.system(shop_a.pk), name="同城商家联盟")
    do_invite_to_alliance(Principal.system(shop_a.pk), alliance.pk, tenant_slug=shop_b.slug)
    do_join_alliance(Principal.system(shop_b.pk), alliance.pk)
    do_list_product(Principal.system(shop_b.pk), alliance.pk, product_id="milk-tea", rate_bps=1500,
                    refund_window_days=0)

    alice = MemberFactory(tenant=shop_a, display_name="A店会员")
    link = do_get_or_create_link(Principal.system(shop_a.pk), member_id=alice.pk)
    start = timezone.now() - timedelta(minutes=1)
    evs = []
    for i in range(3):
        buyer = MemberFactory(tenant=shop_b, display_name=f"B店顾客{i}")
        ev = paid_event(shop_b, buyer,
                        [order_line("milk-tea", 2000, "goods"),
                         order_line("not-listed", 5000, "goods")], code=link.code)
        on_order_event(ev)
        evs.append(ev)
    on_order_event(refund_event(evs[1]))
    on_order_event(evs[0])  # replay
    end = timezone.now() + timedelta(minutes=1)

    assert Commission.objects.filter(alliance=alliance).count() == 3
    assert member_balance(shop_a, alice, "available") == 2 * 300  # 15% of 20.00, twice (one refunded)

    st = do_build_statement(alliance.pk, payer_id=shop_b.pk, payee_id=shop_a.pk, start=start, end=end)
    payable = merchant_account(shop_b.pk, "merchant_payable", shop_a.pk)
    receivable = merchant_account(shop_a.pk, "merchant_receivable", shop_b.pk)
    payable_sum = Entry.objects.filter(account=payable).aggregate(s=Sum("amount_fen"))["s"]
    receivable_sum = Entry.objects.filter(account=receivable).aggregate(s=Sum("amount_fen"))["s"]
    assert st.total_fen == 600 == payable_sum == -receivable_sum
    assert sum(li.amount_fen for li in st.lines.all()) == st.total_fen
    for li in st.lines.all():  # every line is backed by one entry in each merchant's books
        payer_entry = li.payer_transaction.entries.get(account=payable)
        payee_entry = li.payee_transaction.entries.get(account=receivable)
        assert payer_entry.amount_fen == li.amount_fen == -payee_entry.amount_fen
    assert do_build_statement(alliance.pk, payer_id=shop_b.pk, payee_id=shop_a.pk, start=start, end=end).pk == st.pk

    do_settle_statement(st.pk)
    do_settle_statement(st.pk)
    payable.refresh_from_db()
    receivable.refresh_from_db()
    assert payable.balance_fen == 0 and receivable.balance_fen == 0
    assert AllianceStatement.objects.get(pk=st.pk).settled_at is not None
    assert check_ledger(shop_a.pk).ok and check_ledger(shop_b.pk).ok
    # a later statement over a period that contains the settlement postings lists only commissions
    st2 = do_build_statement(alliance.pk, payer_id=shop_b.pk, payee_id=shop_a.pk, start=start,
                             end=end + timedelta(days=1))
    assert st2.total_fen == 600 and st2.lines.count() == st.lines.count()


def test_no_alliance_no_commission(tenant):
    other = Tenant.objects.create(slug="x", name="无关商家")
    alice = MemberFactory(tenant=tenant, display_name="A")
    link = do_get_or_create_link(Principal.system(tenant.pk), member_id=alice.pk)
    on_order_event(paid_event(other, MemberFactory(tenant=other, display_name="顾客"), [order_line("p", 2000, "goods")],
                              code=link.code))
    assert not Commission.objects.exists()
