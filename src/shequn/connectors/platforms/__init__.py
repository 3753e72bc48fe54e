"""The chat platforms, one package each (``matrix``, ``telegram``, ``wecom``):

* ``inbound.py`` — PURE functions: a platform payload → the normalised event dicts that
  :func:`shequn.activity.services.do_ingest` takes (plus the rooms, members and staff facts the
  payload reveals), and the signature / secret checks. No database, no Django models, no cache:
  they are unit-tested on recorded payloads without a database.
* ``outbound.py`` — the platform's API calls: the outbox adapter registered in
  :mod:`shequn.connectors.adapters` and the clients the services use (Matrix sync, Telegram
  getUpdates/setWebhook, the WeCom server API).

What touches the database (raw callbacks, rooms, tokens, the hand-off to the activity stream) lives
in :mod:`shequn.connectors.services`."""
