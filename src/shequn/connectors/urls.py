from django.urls import path

from . import views

app_name = "connectors"
urlpatterns = [
    path("telegram/<str:hook_key>/", views.telegram_webhook, name="telegram"),
    path("wecom/<str:hook_key>/", views.wecom_callback, name="wecom"),
    path("matrix/<str:hook_key>/_matrix/app/v1/transactions/<str:txn_id>", views.matrix_transaction,
         name="matrix_txn"),
]
