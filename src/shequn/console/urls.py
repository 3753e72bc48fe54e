"""Console pages outside the model lists, mounted at ``/console/shequn/``. Each view is wrapped in
the admin site's ``admin_view`` (login required, staff only, never cached)."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.urls import path

from . import analytics_views, auth_views, referral_views, segment_views, views

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

urlpatterns += [
    path("analytics/funnel/", _v(segment_views.funnel), name="analytics_funnel"),
    path("analytics/funnel/members.<str:fmt>", _v(segment_views.funnel_members_export),
         name="analytics_funnel_export"),
    path("analytics/cohorts/", _v(segment_views.cohorts), name="analytics_cohorts"),
    path("analytics/segments/", _v(segment_views.segment_list), name="segments"),
    path("analytics/segments/add/", _v(segment_views.segment_edit), name="segment_add"),
    path("analytics/segments/count/", _v(segment_views.segment_count), name="segment_count"),
    path("analytics/segments/<int:segment_id>/", _v(segment_views.segment_edit), name="segment_change"),
    path("analytics/segments/<int:segment_id>/action/", _v(segment_views.segment_action), name="segment_action"),
    path("analytics/segments/<int:segment_id>/export.<str:fmt>", _v(segment_views.segment_export),
         name="segment_export"),
]
