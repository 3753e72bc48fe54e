"""Members' own pages (server-rendered, mobile first), one module per page group. Every write goes
through the same services as the API and the console, acting as the signed-in member on their own id;
every read is scoped to the member, so another member's id answers 404."""

from .checkout import buy, order_detail, orders, pay, refund
from .commerce import coupons, flash_buy, flash_detail, flash_list, group_buy, share_coupon, team
from .engagement import checkin, lottery, lottery_record, red_packet
from .landing import community, home, landing, open_group, request_join
from .money import earnings, invite, invite_poster, invite_qr, withdraw, withdrawal_detail
from .signin import login, logout, magic, telegram_callback, wechat_callback, wechat_start

__all__ = [
    "buy", "checkin", "community", "coupons", "earnings", "flash_buy", "flash_detail", "flash_list", "group_buy",
    "home", "invite", "invite_poster", "invite_qr", "landing", "login", "logout", "lottery", "lottery_record",
    "magic", "open_group", "order_detail", "orders", "pay", "red_packet", "refund", "request_join", "share_coupon",
    "team", "telegram_callback", "wechat_callback", "wechat_start", "withdraw", "withdrawal_detail",
]
