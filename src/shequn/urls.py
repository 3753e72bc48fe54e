from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from shequn.api.main import api, grouped_urls
from shequn.console import auth_views
from shequn.portal.views import landing

_api_patterns, _api_app, _api_namespace = api.urls

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", (grouped_urls(_api_patterns), _api_app, _api_namespace)),
    path("console/shequn/", include("shequn.console.urls")),
    # in front of the admin site's own views: throttled password + two-factor sign-in, audited sign-out
    path("console/login/", auth_views.login, name="console_login"),
    path("console/login/2fa/", auth_views.login_2fa, name="console_login_2fa"),
    path("console/logout/", auth_views.logout, name="console_logout"),
    path("console/", admin.site.urls),
    path("portal/", include("shequn.portal.urls")),
    path("r/<str:code>", landing, name="portal_landing"),
    path("hooks/", include("shequn.connectors.urls")),
]
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
