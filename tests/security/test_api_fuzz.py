"""Every endpoint of the OpenAPI schema, fuzzed: no 5xx, answers as documented, no scope leak.

schemathesis generates requests from the app's own `/openapi.json` (valid and invalid query
parameters and headers) and sends them over HTTP to the real server (uvicorn as `collector
serve` configures it) over a real store (SQLite, then PostgreSQL) holding two districts'
data. For every answer:
no server error, status code, content type, headers and body as the schema documents them,
and a token scoped to Nanchang (360100) never sees anything of Beijing (110101): no item
naming a Beijing gateway, enterprise or district, nor those names anywhere in the body unless
the request itself named them. Derandomized with a bounded number of examples, so a run is
repeatable and takes seconds. `/v1/stream` never ends, so it is read by its own test here.
Besides each GET, the documented HEAD and OPTIONS of `/healthz` are fuzzed so, and HEAD and
OPTIONS on every other path (monitors and browsers send them anywhere) with the GET's fuzzed
queries and headers: a 405 naming GET, never a server error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.collector_api import BEIJING, NANCHANG, auth
from tests.support.postgres import PostgresDatabases
from tests.support.served_api import DISTRICT_OF, ENTERPRISE_OF, ServedApi, served_api

SCOPED_TOKEN: Final = "nc-token"  # noqa: S105 - a test token (tests.support.collector_api)
IN_SCOPE: Final = frozenset({NANCHANG.district})
HIDDEN: Final = (BEIJING.gateway, BEIJING.enterprise, BEIJING.district)
FUZZED: Final = (
    "/healthz",
    "/v1/gateways",
    "/v1/points",
    "/v1/latest",
    "/v1/readings",
    "/v1/alarms",
    "/v1/gaps",
    "/v1/audit/verify",
    "/v1/quality",
)
NOT_FUZZED: Final = {"/v1/stream": "never ends: test_the_stream_keeps_to_its_scope"}
# The operations documented besides each path's GET (load balancers' health checks).
OTHER_METHODS: Final = {"/healthz": ("HEAD", "OPTIONS")}
# HEAD and OPTIONS where they are not documented: the methods a monitor or a browser's
# preflight sends to any path. Every path answers them (test_undocumented_methods_...).
PROBE_METHODS: Final = ("HEAD", "OPTIONS")
UNDOCUMENTED: Final = [
    (path, method)
    for path in (*FUZZED, *NOT_FUZZED)
    for method in PROBE_METHODS
    if method not in OTHER_METHODS.get(path, ())
]
# Per path and method: each answer is the router's, before any parameter is looked at.
UNDOCUMENTED_EXAMPLES: Final = 6
# Per operation and mode; PostgreSQL answers slower, and shares most code with SQLite.
EXAMPLES: Final = {"sqlite": 40, "postgresql": 20}
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> Iterator[ServedApi]:
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("fuzz")
        with served_api(f"sqlite:///{folder}/collector.db") as served:
            yield served
        return
    url = postgres_databases.create()
    try:
        with served_api(url) as served:
            yield served
    finally:
        postgres_databases.drop(url)


@pytest.fixture(scope="module")
def schema(api: ServedApi) -> schemathesis.BaseSchema:
    spec = httpx.get(f"{api.url}/openapi.json", headers=auth(SCOPED_TOKEN)).json()
    return schemathesis.openapi.from_dict(spec)


def test_every_endpoint_is_fuzzed_or_says_why_not(schema: schemathesis.BaseSchema) -> None:
    assert set(schema.raw_schema["paths"]) == set(FUZZED) | set(NOT_FUZZED)
    documented = {
        (path, method.upper())
        for path, item in schema.raw_schema["paths"].items()
        for method in item
    }
    assert documented == {(path, "GET") for path in (*FUZZED, *NOT_FUZZED)} | {
        (path, method) for path, methods in OTHER_METHODS.items() for method in methods
    }


def test_errors_are_documented_as_problem_documents(schema: schemathesis.BaseSchema) -> None:
    """The fuzzer's first find: errors were documented as application/json."""
    for path, item in schema.raw_schema["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and "content" in response:
                    assert set(response["content"]) == {"application/problem+json"}, (
                        path,
                        method,
                        code,
                    )


@pytest.mark.parametrize("path", [p for p in FUZZED if p.startswith("/v1/") and "audit" not in p])
def test_the_store_holds_both_districts_and_the_token_sees_one(api: ServedApi, path: str) -> None:
    # Without this the scope checks below could pass on an empty store.
    with httpx.Client(base_url=api.url, timeout=30) as http:
        everything = http.get(path, headers=auth("all-token")).json()["items"]
        scoped = http.get(path, headers=auth(SCOPED_TOKEN)).json()["items"]
    assert {item["gateway"] for item in everything} == set(DISTRICT_OF)
    assert {item["gateway"] for item in scoped} == {NANCHANG.gateway}
    assert _leaks(scoped) == []
    assert _leaks(everything) != []  # the check sees Beijing where it is


BEIJING_FILTERS: Final = {
    "gateway": BEIJING.gateway,
    "enterprise": BEIJING.enterprise,
    "district": BEIJING.district,
}
NOWHERE_FILTERS: Final = {  # the same shapes, naming nothing that exists
    "gateway": "91999999MA0000009X-GW01",
    "enterprise": "91999999MA0000009X",
    "district": "999999",
}


@pytest.mark.parametrize("path", [p for p in FUZZED if p.startswith("/v1/")])
def test_asking_for_another_district_by_name_shows_nothing_of_it(
    schema: schemathesis.BaseSchema, api: ServedApi, path: str
) -> None:
    """Random strings rarely hit a real name: every filter of each endpoint names Beijing.

    The answer is the one for a name that does not exist at all (the name aside), so that it
    does not even tell that Beijing's gateway exists.
    """
    names = {p["name"] for p in schema.raw_schema["paths"][path]["get"].get("parameters", [])}
    filters = sorted(names & set(BEIJING_FILTERS))
    with httpx.Client(base_url=api.url, headers=auth(SCOPED_TOKEN), timeout=30) as http:
        for name in filters:
            for group in ("gateway", "enterprise", "district") if "group" in names else (None,):
                params = {name: BEIJING_FILTERS[name]} | ({"group": group} if group else {})
                answer = http.get(path, params=params)
                assert answer.status_code < 500, answer.text
                nowhere = http.get(path, params=params | {name: NOWHERE_FILTERS[name]})
                assert (answer.status_code, answer.text) == (
                    nowhere.status_code,
                    nowhere.text.replace(NOWHERE_FILTERS[name], BEIJING_FILTERS[name]),
                )
                if answer.status_code == 200:
                    body = answer.json()
                    items = body.get("items", body) if isinstance(body, dict) else body
                    assert _leaks(items) == [], (params, answer.text[:500])
                    if isinstance(body, dict) and "items" in body:
                        assert body["items"] == [], (params, answer.text[:500])


def _leaks(value: Any) -> list[str]:
    """What of another district an answer shows (items naming its gateway or district)."""
    found = []
    if isinstance(value, dict):
        gateway = value.get("gateway")
        if isinstance(gateway, str) and DISTRICT_OF.get(gateway, "?") not in IN_SCOPE:
            found.append(f"gateway {gateway}")
        district = value.get("district")
        if isinstance(district, str) and district not in IN_SCOPE:
            found.append(f"district {district}")
        enterprise = value.get("enterprise")
        if isinstance(enterprise, str) and enterprise not in {
            ENTERPRISE_OF[g] for g, d in DISTRICT_OF.items() if d in IN_SCOPE
        }:
            found.append(f"enterprise {enterprise}")
        for item in value.values():
            found.extend(_leaks(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_leaks(item))
    return found


def assert_in_scope(request_url: str, content_type: str, text: str) -> None:
    """Nothing of Beijing in an answer to the Nanchang token (an echo of the request aside)."""
    json_body = content_type.startswith(("application/json", "application/problem+json"))
    if json_body and text:  # a HEAD answer's is empty
        assert _leaks(json.loads(text)) == [], text[:500]
    if not any(hidden in request_url for hidden in HIDDEN):
        for hidden in HIDDEN:
            assert hidden not in text, (request_url, text[:500])


@pytest.mark.parametrize(
    ("path", "method", "mode"),
    [(path, "GET", GenerationMode.POSITIVE) for path in FUZZED]
    + [
        (path, method, GenerationMode.POSITIVE)
        for path, methods in OTHER_METHODS.items()
        for method in methods
    ]
    # /healthz takes no parameter, so it has no invalid request to make.
    + [(path, "GET", GenerationMode.NEGATIVE) for path in FUZZED if path != "/healthz"],
)
def test_fuzzed_requests_answer_as_documented_and_in_scope(
    schema: schemathesis.BaseSchema, api: ServedApi, path: str, method: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    checks = CHECKS  # a HEAD answer is documented without content, as it comes
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES[api.backend],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case[Any]) -> None:
        headers = {**dict(case.headers or {}), **auth(SCOPED_TOKEN)}
        response = case.call(base_url=api.url, session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=checks, headers=headers)
        content_type = (response.headers.get("content-type") or [""])[0]
        assert_in_scope(response.request.url or "", content_type, response.text or "")

    try:
        fuzz()
    finally:
        session.close()


@pytest.mark.parametrize(("path", "method"), UNDOCUMENTED)
def test_undocumented_methods_are_refused_as_such(
    schema: schemathesis.BaseSchema, api: ServedApi, path: str, method: str
) -> None:
    """HEAD or OPTIONS where only GET is documented: 405 naming GET, whatever the query.

    The GET's fuzzed requests (valid and invalid), sent with the other method: the answer is
    a problem document (OPTIONS; HEAD's carries none) refusing the method and listing the
    one allowed (RFC 9110 15.5.6), never a server error nor a parameter's 422. A request the
    fuzzer sends without the token (it does so to test the security scheme) is refused
    first, with 401 and the challenge, as every request without one.
    """
    operation = schema[path]["GET"]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))
    session = requests.Session()

    @settings(
        max_examples=UNDOCUMENTED_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def probe(case: schemathesis.Case[Any]) -> None:
        headers = {**dict(case.headers or {}), **auth(SCOPED_TOKEN)}
        request = case.as_transport_kwargs(base_url=api.url, headers=headers)
        response = session.request(**{**request, "method": method, "timeout": 30})
        seen = (method, response.url, response.status_code, response.text[:500])
        if "authorization" in response.request.headers:
            assert response.status_code == 405, seen
            assert response.headers["allow"] == "GET", seen
        else:
            assert response.status_code == 401, seen
            assert response.headers["www-authenticate"].startswith("Bearer"), seen
        assert response.headers["content-type"] == "application/problem+json"
        if method == "HEAD":
            assert response.content == b""
        else:
            problem = response.json()
            assert problem["status"] == response.status_code, problem
        assert_in_scope(response.url, response.headers["content-type"], response.text)

    try:
        probe()
    finally:
        session.close()


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(field, value) of each SSE line; a comment (a ping) is ("", text)."""
    for line in lines:
        if line:
            field, _, value = line.partition(":")
            yield field, value.strip()


def _head(api: ServedApi) -> str:
    """The feed's newest position: the `id:` a stream without Last-Event-ID starts with."""
    with (
        httpx.Client(base_url=api.url, headers=auth("all-token"), timeout=30) as http,
        http.stream("GET", "/v1/stream") as answer,
    ):
        return next(value for field, value in _sse(answer.iter_lines()) if field == "id")


def _events(api: ServedApi, token: str, *, until_id: str | None, count: int | None) -> list[Any]:
    """The stream's events from its start, up to the one with `until_id`, or `count` of
    them and then whatever comes before the next ping (the stream is caught up by then)."""
    events: list[Any] = []
    with (
        httpx.Client(base_url=api.url, headers=auth(token), timeout=30) as http,
        http.stream("GET", "/v1/stream", headers={"Last-Event-ID": "r0.f0"}) as answer,
    ):
        assert answer.status_code == 200, answer.read()
        for field, value in _sse(answer.iter_lines()):
            if field == "data":
                events.append(json.loads(value))
            reached_id = field == "id" and value == until_id
            caught_up = field == "" and count is not None and len(events) >= count
            if reached_id or caught_up:
                return events
    raise AssertionError("the stream ended")


def test_the_stream_keeps_to_its_scope(api: ServedApi) -> None:
    everything = _events(api, "all-token", until_id=_head(api), count=None)
    assert {event["gateway"] for event in everything} == set(DISTRICT_OF)  # Beijing is there
    expected = sum(1 for event in everything if event["gateway"] == NANCHANG.gateway)
    scoped = _events(api, SCOPED_TOKEN, until_id=None, count=expected)
    assert _leaks(scoped) == []
    assert len(scoped) == expected
