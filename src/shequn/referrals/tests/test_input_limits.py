"""Issue 12: the services refuse negative caps and strings longer than their columns with a 422 that
names the field, before writing anything (on PostgreSQL an over-long value would abort the
transaction with a database error; on SQLite it would be stored)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from shequn.core.errors import Invalid
from shequn.core.permissions import Principal
from shequn.referrals.models import CommissionPlan, CommissionRule, InviteLink, Withdrawal
from shequn.referrals.services import do_create_plan, do_get_or_create_link, do_request_withdrawal
from shequn.testing.factories import MemberFactory

WRITES = ("INSERT", "UPDATE", "DELETE")


@contextmanager
def refused(field: str):
    """The block raises :class:`Invalid` naming ``field`` and sends no write to the database."""
    with CaptureQueriesContext(connection) as queries, pytest.raises(Invalid) as exc:
        yield exc
    assert exc.value.details["field"] == field, exc.value.details
    assert exc.value.status == 422
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(WRITES)]
    assert not writes, writes


# --- commission plans ----------------------------------------------------------------------------


def test_plan_refuses_a_negative_order_cap(tenant):
    with refused("cap_per_order_fen"):
        do_create_plan(Principal.system(tenant.pk), name="p", cap_per_order_fen=-1, rules=[{"rate_bps": 1000}])
    assert not CommissionPlan.objects.exists()


def test_plan_refuses_a_negative_rule_cap_naming_the_rule(tenant):
    with refused("rules[1].cap_fen") as exc:
        do_create_plan(Principal.system(tenant.pk), name="p", rules=[{"rate_bps": 1000, "cap_fen": 0},
                                                            {"rate_bps": 1000, "cap_fen": -5}])
    assert "第 2 条" in exc.value.message
    assert not CommissionPlan.objects.exists() and not CommissionRule.objects.exists()


@pytest.mark.parametrize(("kwargs", "field", "limit"), [
    ({"name": "名" * 121}, "name", 120),
    ({"campaign": "c" * 65}, "campaign", 64),
    ({"rules": [{"rate_bps": 100}, {"product_id": "p" * 65, "rate_bps": 100}]}, "rules[1].product_id", 64),
])
def test_plan_refuses_strings_longer_than_their_columns(tenant, kwargs, field, limit):
    args = {"name": "p", "rules": [{"rate_bps": 100}], **kwargs}
    with refused(field) as exc:
        do_create_plan(Principal.system(tenant.pk), **args)
    assert exc.value.details["max_length"] == limit
    assert str(limit) in exc.value.message
    assert not CommissionPlan.objects.exists() and not CommissionRule.objects.exists()


def test_plan_accepts_strings_at_the_column_length(tenant):
    plan, _warnings = do_create_plan(Principal.system(tenant.pk), name=" " + "名" * 120 + " ", campaign="c" * 64,
                                     cap_per_order_fen=0, rules=[{"product_id": "p" * 64, "cap_fen": 0,
                                                                  "rate_bps": 100}])
    assert plan.name == "名" * 120 and plan.campaign == "c" * 64 and plan.cap_per_order_fen == 0
    rule = plan.rules.get()
    assert rule.product_id == "p" * 64 and rule.cap_fen == 0


# --- withdrawals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"payee": "o" * 129}, "payee"),
    ({"idempotency_key": "k" * 129}, "request_id"),
])
def test_withdrawal_refuses_over_long_payee_and_request_id(tenant, kwargs, field):
    a = MemberFactory(tenant=tenant, display_name="A")
    args = {"member_id": a.pk, "amount_fen": 5000, "idempotency_key": "k", "payee": "openid", **kwargs}
    with refused(field) as exc:
        do_request_withdrawal(Principal.system(tenant.pk), **args)
    assert exc.value.details["max_length"] == 128
    assert not Withdrawal.objects.exists()


def test_withdrawal_length_check_lets_the_column_length_through(tenant):
    a = MemberFactory(tenant=tenant, display_name="A")
    with pytest.raises(Invalid) as exc:  # refused later, for the amount, not for the lengths
        do_request_withdrawal(Principal.system(tenant.pk), member_id=a.pk, amount_fen=1, idempotency_key="k" * 128,
                              payee="o" * 128)
    assert exc.value.code == "below_minimum"


# --- invite links --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field", "limit"), [
    ({"campaign": "c" * 65}, "campaign", 64),
    ({"kind": "channel", "channel": "渠" * 65}, "channel", 64),
    ({"label": "l" * 121}, "label", 120),
])
def test_link_refuses_over_long_campaign_channel_and_label(tenant, kwargs, field, limit):
    a = MemberFactory(tenant=tenant, display_name="A")
    args = {"member_id": a.pk, **kwargs}
    with refused(field) as exc:
        do_get_or_create_link(Principal.system(tenant.pk), **args)
    assert exc.value.details["max_length"] == limit
    assert not InviteLink.objects.exists()


def test_link_accepts_strings_at_the_column_length(tenant):
    link = do_get_or_create_link(Principal.system(tenant.pk), kind="channel", channel="渠" * 64, campaign="c" * 64,
                                 label="l" * 120)
    assert (link.channel, link.campaign, link.label) == ("渠" * 64, "c" * 64, "l" * 120)
