"""Test support shared by every app's tests (never imported by the product).

- :mod:`.factories` — one factory_boy factory per model a test needs (tenant, member, community,
  group, membership, product/SKU, order, invite link, commission plan, staff login) and the order
  events the referral engine consumes.
- :mod:`.scenarios` — builders of several related objects at once (the API's per-tenant world, the
  console's seeded club, the portal's paid community).
- :mod:`.plugin` — the pytest plugin the root ``conftest.py`` loads: the shared fixtures
  (``tenant``, ``system``, ``make_client``, ``world``, ``browser`` …).

The race helper for concurrency tests is :func:`shequn.core.testing.race`.
"""
