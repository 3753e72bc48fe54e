"""Fission tasks (裂变任务): "invite N paying members, get a reward". Cash rewards post to the
ledger here (idempotency key ``fission:<task>:<member>``, one ``FissionReward`` per task and member);
points and coupons come from the hooks other engines register with :func:`register_reward_hook`
(engagement: points, commerce: coupons) from their ``AppConfig.ready``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from shequn.ledger.models import AccountKind
from shequn.ledger.services import do_post

from ..models import (
    FissionReward,
    FissionTask,
    RewardKind,
)
from ..selectors import valid_referrals
from ._common import member_account, merchant_account

RewardHook = Callable[[int, int, FissionTask], None]
_REWARD_HOOKS: dict[str, RewardHook] = {}


def register_reward_hook(kind: str, hook: RewardHook) -> None:
    """Other apps grant points/coupons/gifts: ``hook(tenant_id, member_id, task)`` runs inside the
    transaction that records the reward (must not commit on its own)."""
    _REWARD_HOOKS[kind] = hook


def _check_fission(tenant_id: int, referrer_id: int, community_id: int | None, campaign: str, now: datetime) -> None:
    tasks = FissionTask.objects.filter(tenant_id=tenant_id, is_active=True).filter(
        Q(community__isnull=True) | Q(community_id=community_id)).filter(Q(campaign="") | Q(campaign=campaign))
    for task in tasks:
        if FissionReward.objects.filter(task=task, member_id=referrer_id).exists():
            continue
        n = valid_referrals(tenant_id, referrer_id, task.community_id, task.campaign)
        if n < task.threshold:
            continue
        try:
            with transaction.atomic():
                reward = FissionReward.objects.create(tenant_id=tenant_id, task=task, member_id=referrer_id,
                                                      detail={"valid_referrals": n})
                if task.reward_kind == RewardKind.CASH and task.reward_value > 0:
                    do_post(tenant_id, f"fission:{task.pk}:{referrer_id}", "fission.reward",
                            [(merchant_account(tenant_id, AccountKind.REWARD_EXPENSE), -task.reward_value),
                             (member_account(tenant_id, referrer_id, AccountKind.AVAILABLE), task.reward_value)],
                            memo=f"裂变奖励 {task.name}", ref=("referrals.FissionReward", reward.pk))
                elif task.reward_kind in _REWARD_HOOKS:
                    _REWARD_HOOKS[task.reward_kind](tenant_id, referrer_id, task)
        except IntegrityError:
            continue
