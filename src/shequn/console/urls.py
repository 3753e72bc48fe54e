"""Console pages outside the model lists, mounted at ``/console/shequn/``. Each view is wrapped in
the admin site's ``admin_view`` (login required, staff only, never cached)."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.urls import path

from . import analytics_views, auth_views, referral_views, views

app_name = "console"


def _v(view: Callable[..., Any]) -> Callable[..., Any]:
    return admin.site.admin_view(view)


urlpatterns = [
    path("communities/<int:community_id>/dashboard/", _v(views.community_dashboard), name="community_dashboard"),
    path("communities/<int:community_id>/role-recommendations/<int:recommendation_id>/",
         _v(views.role_recommendation_decide), name="role_recommendation_decide"),
    path("members/import/", _v(views.member_import), name="member_import"),
    path("members/import/template.csv", _v(views.member_import_template), name="member_import_template"),
    path("members/export.<str:fmt>", _v(views.member_export), name="member_export"),
    path("members/merge/", _v(views.member_merge), name="member_merge"),
    path("members/<int:member_id>/data-rights/", _v(views.member_data_rights), name="member_data_rights"),
    path("tenant/", _v(views.tenant_switch), name="tenant_switch"),
    path("security/", _v(auth_views.security), name="security"),
    path("members/merge-suggestions/", _v(views.member_merge_suggestions), name="member_merge_suggestions"),
    path("referrals/report/", _v(referral_views.referral_report), name="referral_report"),
    path("referrals/alliances/", _v(referral_views.alliances), name="alliances"),
    path("analytics/health/", _v(analytics_views.health_page), name="health"),
    path("analytics/reach/", _v(analytics_views.reach_page), name="reach"),
]
