"""Members' pages under /portal/<tenant slug>/ (the landing /r/<code> is in the root urls)."""

from django.urls import path

from . import views

app_name = "portal"
urlpatterns = [
    path("<slug:slug>/", views.home, name="home"),
    path("<slug:slug>/login/", views.login, name="login"),
    path("<slug:slug>/logout/", views.logout, name="logout"),
    path("<slug:slug>/magic/<str:token>/", views.magic, name="magic"),
    path("<slug:slug>/wechat/", views.wechat_start, name="wechat"),
    path("<slug:slug>/wechat/callback/", views.wechat_callback, name="wechat_callback"),
    path("<slug:slug>/telegram/callback/", views.telegram_callback, name="telegram_callback"),
    path("<slug:slug>/c/<int:community_id>/", views.community, name="community"),
    path("<slug:slug>/c/<int:community_id>/join/", views.request_join, name="request_join"),
    path("<slug:slug>/c/<int:community_id>/own-group/", views.open_group, name="open_group"),
    path("<slug:slug>/buy/<int:sku_id>/", views.buy, name="buy"),
    path("<slug:slug>/orders/", views.orders, name="orders"),
    path("<slug:slug>/orders/<int:order_id>/", views.order_detail, name="order"),
    path("<slug:slug>/orders/<int:order_id>/pay/", views.pay, name="pay"),
    path("<slug:slug>/orders/<int:order_id>/refund/", views.refund, name="refund"),
    path("<slug:slug>/invite/", views.invite, name="invite"),
    path("<slug:slug>/invite/<str:code>/qr.png", views.invite_qr, name="invite_qr"),
    path("<slug:slug>/invite/<str:code>/poster.png", views.invite_poster, name="invite_poster"),
    path("<slug:slug>/earnings/", views.earnings, name="earnings"),
    path("<slug:slug>/earnings/withdraw/", views.withdraw, name="withdraw"),
    path("<slug:slug>/withdrawals/<int:withdrawal_id>/", views.withdrawal_detail, name="withdrawal"),
    path("<slug:slug>/flash/", views.flash_list, name="flash_list"),
    path("<slug:slug>/flash/<int:flash_id>/", views.flash_detail, name="flash"),
    path("<slug:slug>/flash/<int:flash_id>/buy/", views.flash_buy, name="flash_buy"),
    path("<slug:slug>/checkin/", views.checkin, name="checkin"),
    path("<slug:slug>/lottery/<int:lottery_id>/", views.lottery, name="lottery"),
    path("<slug:slug>/lottery/<int:lottery_id>/record.json", views.lottery_record, name="lottery_record"),
    path("<slug:slug>/redpacket/<int:packet_id>/", views.red_packet, name="red_packet"),
    path("<slug:slug>/groupbuy/<int:group_buy_id>/", views.group_buy, name="group_buy"),
    path("<slug:slug>/team/<str:token>/", views.team, name="team"),
    path("<slug:slug>/coupons/", views.coupons, name="coupons"),
    path("<slug:slug>/coupons/share/<str:token>/", views.share_coupon, name="share_coupon"),
]
