"""Every list operation pages the same way (``core.pagination.KeysetPagination`` on django-ninja's
``@paginate``): ``{"items": [...], "next_cursor": str | null}``, ``limit`` 1 … 500, a cursor the API
issued, keyset order on the primary key (``RankPagination``, an offset cursor, for a computed ranking);
and the OpenAPI schema names each component once."""

import typing

import pytest
from pydantic import BaseModel

from shequn.api.main import API_ROOT, api
from shequn.api.tests.test_isolation import all_ids
from shequn.core.pagination import KeysetPagination, decode_cursor, encode_cursor
from shequn.members.models import Member


def _paginated() -> list[str]:
    out = []
    for bound in api._get_bound_routers():
        for path, view in bound.path_operations.items():
            for op in view.operations:
                if getattr(op.view_func, "_ninja_is_paginated", False):
                    out.append("/" + "/".join(p for p in f"{API_ROOT}/{bound.prefix}/{path}".split("/") if p))
    return sorted(out)


PAGINATED = _paginated()


def _own_url(path: str, ids: dict[str, int]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", str(value))
    return path


def test_every_list_operation_uses_the_one_paginator():
    """Every operation answering ``{items, next_cursor}`` is paginated by ``@paginate``, with the
    same two query parameters; none pages by hand."""
    schema = api.get_openapi_schema()
    components = schema["components"]["schemas"]
    paged = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            ref = (operation["responses"].get(200, {}).get("content", {}).get("application/json", {})
                   .get("schema", {}).get("$ref", ""))
            props = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
            if "next_cursor" in props:
                assert method == "get" and set(props) == {"items", "next_cursor"}, path
                params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
                assert params["limit"]["schema"]["minimum"] == 1 and params["limit"]["schema"]["maximum"] == 500
                assert "cursor" in params, path
                paged.add(path)
    assert paged == set(PAGINATED)
    assert len(paged) >= 19


@pytest.mark.parametrize("path", PAGINATED)
def test_bad_limit_and_cursor_are_422_naming_them(path, world, make_client):
    c = make_client(world.tenant)
    url = _own_url(path, all_ids(world))
    page = c.client.get(url, headers=c.headers)
    assert page.status_code == 200, (url, page.content)
    assert set(page.json()) == {"items", "next_cursor"}
    for query, field in (("limit=0", "query.limit"), ("limit=501", "query.limit"), ("limit=x", "query.limit"),
                         ("cursor=%25%25%25", "query.cursor"), (f"cursor={encode_cursor(0)}", "query.cursor"),
                         ("cursor=bm90LWFuLWlk", "query.cursor"), ("cursor=" + "M" * 40, "query.cursor")):
        resp = c.client.get(f"{url}?{query}", headers=c.headers)
        assert resp.status_code == 422, (url, query, resp.content)
        assert resp.json()["code"] == "validation_error"
        assert [d["field"] for d in resp.json()["details"]] == [field], (url, query, resp.json())


def test_pages_walk_every_row_once_newest_first_and_stay_stable_under_inserts(world, make_client):
    c = make_client(world.tenant)
    for i in range(6):
        c.post("/api/v1/members", {"display_name": f"翻页{i}"})
    total = Member.objects.filter(tenant=world.tenant).count()
    seen: list[int] = []
    cursor = None
    while True:
        page = c.get("/api/v1/members", {"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [m["id"] for m in page["items"]]
        if len(seen) == 4:  # a member created between two pages does not shift the next page
            c.post("/api/v1/members", {"display_name": "中途加入"})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == total
    assert seen == sorted(seen, reverse=True)


def test_communities_page_oldest_first(world, make_client):
    c = make_client(world.tenant)
    for i in range(3):
        assert c.post("/api/v1/communities", {"name": f"翻页社群{i}"}).status_code == 201
    first = c.get("/api/v1/communities", {"limit": 2}).json()
    rest = c.get("/api/v1/communities", {"limit": 500, "cursor": first["next_cursor"]}).json()
    ids = [x["id"] for x in first["items"] + rest["items"]]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) >= 3
    assert rest["next_cursor"] is None


def test_the_default_page_size_and_the_cursor_round_trip():
    assert KeysetPagination().Input().limit == 50
    assert KeysetPagination(default_limit=100).Input().limit == 100
    for pk in (1, 42, 2**63 - 1):
        assert decode_cursor(encode_cursor(pk)) == pk


def _schema_classes() -> dict[str, list[type[BaseModel]]]:
    found: dict[str, list[type[BaseModel]]] = {}

    def walk(tp: object, depth: int = 0) -> None:
        if depth > 10:
            return
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__module__.startswith("shequn.") or tp.__name__.startswith("Paged"):
                same = found.setdefault(tp.__name__, [])
                if tp in same:
                    return
                same.append(tp)
            for field in tp.model_fields.values():
                walk(field.annotation, depth + 1)
            return
        for arg in typing.get_args(tp):
            walk(arg, depth + 1)

    for bound in api._get_bound_routers():
        for view in bound.path_operations.values():
            for op in view.operations:
                for model in op.models:
                    walk(model)
                for response in op.response_models.values():
                    if response is not None:
                        walk(response)
    return found


def test_every_component_name_stands_for_one_schema():
    """The OpenAPI components are keyed by class name: two different schemas called ``EntryOut`` (or
    ``MemberIn``) in two apps would silently share one entry and one app's answers would be checked
    against the other's schema."""
    clashes = {name: [f"{c.__module__}.{c.__qualname__}" for c in classes]
               for name, classes in _schema_classes().items()
               if len({repr(c.model_json_schema()) for c in classes}) > 1}
    assert clashes == {}
