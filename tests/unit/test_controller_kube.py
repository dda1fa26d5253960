"""kube.py against a fake API server: error statuses propagate, on every client version.

The fake is an aiohttp server on the loopback interface that answers each request with the
status a test chose. kubernetes_asyncio up to at least 36.1 returns the raw response of a
call made with `_preload_content=False` whatever its status; later versions raise
ApiException themselves (tomplus/kubernetes_asyncio#402). The `client` fixture runs every
test both ways: with the installed client, and with its REST layer made to check statuses
as those later versions do.
"""

import asyncio
import logging
import socket

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client import rest
from kubernetes_asyncio.client.exceptions import ApiException
from migrategate.controller.kube import Kube

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "shop-abc"}, "spec": {}}


def status_body(code: int) -> dict:
    reasons = {403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 500: "InternalError"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"fake {code}",
        "reason": reasons.get(code, "Unknown"),
        "code": code,
    }


class FakeAPI:
    """Answers every request with `status` and `body`; records (method, path)."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict = {}
        self.requests: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        return web.json_response(self.body, status=self.status)

    def answer(self, status: int, body: dict | None = None) -> None:
        self.status = status
        self.body = status_body(status) if body is None else body


@pytest.fixture(params=["installed", "status-checking"])
def client_version(request, monkeypatch):
    if request.param == "status-checking":
        original = rest.RESTClientObject.request

        async def request_checking_status(self, method, url, *args, **kwargs):
            r = await original(self, method, url, *args, **kwargs)
            if not 200 <= r.status <= 299:  # what #402 added for _preload_content=False
                data = await r.read()
                raise ApiException(http_resp=rest.RESTResponse(r, data))
            return r

        monkeypatch.setattr(rest.RESTClientObject, "request", request_checking_status)
    return request.param


def run_with_api(fake: FakeAPI, scenario):
    """Run `scenario(kube)` against a fake API server on a free loopback port."""

    async def main():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        kube = Kube(k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{port}")))
        try:
            return await scenario(kube)
        finally:
            await kube.close()
            await runner.cleanup()

    return asyncio.run(main())


def raises(fake: FakeAPI, status: int, call) -> ApiException:
    fake.answer(status)

    async def scenario(kube):
        with pytest.raises(ApiException) as info:
            await call(kube)
        return info.value

    error = run_with_api(fake, scenario)
    assert error.status == status
    return error


ERRORS = [403, 500, 503]


# ----------------------------------------------------------------------------- lists


@pytest.mark.parametrize("status", [*ERRORS, 404])
@pytest.mark.parametrize("what", ["list_jobs", "list_pods"])
def test_a_failed_list_raises_instead_of_reading_as_empty(client_version, what, status):
    fake = FakeAPI()
    error = raises(fake, status, lambda kube: getattr(kube, what)("ns1", "shop"))
    assert f"fake {status}" in str(error.body)


def test_lists_return_their_items_and_select_by_the_migration(client_version):
    fake = FakeAPI()
    fake.answer(200, {"kind": "JobList", "apiVersion": "batch/v1", "items": [JOB]})

    async def scenario(kube):
        return await kube.list_jobs("ns1", "shop"), await kube.list_pods("ns1", "shop")

    jobs, pods = run_with_api(fake, scenario)
    assert jobs == [JOB] and pods == [JOB]
    assert fake.requests == [
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs"),
        ("GET", "/api/v1/namespaces/ns1/pods"),
    ]


def test_an_empty_list_is_empty(client_version):
    fake = FakeAPI()
    fake.answer(200, {"kind": "PodList", "apiVersion": "v1", "items": None})
    assert run_with_api(fake, lambda kube: kube.list_pods("ns1", "shop")) == []


def test_a_success_that_is_not_a_list_raises(client_version):
    fake = FakeAPI()
    fake.answer(200, {"kind": "Status", "status": "Success"})
    with pytest.raises(ApiException):
        run_with_api(fake, lambda kube: kube.list_jobs("ns1", "shop"))


# ----------------------------------------------------------------------------- create / delete


def test_create_job_true_when_created_false_when_it_exists(client_version):
    fake = FakeAPI()
    fake.answer(201, JOB)
    assert run_with_api(fake, lambda kube: kube.create_job("ns1", JOB)) is True
    fake.answer(409)
    assert run_with_api(fake, lambda kube: kube.create_job("ns1", JOB)) is False


@pytest.mark.parametrize("status", [*ERRORS, 404, 422])
def test_a_refused_create_raises_instead_of_reading_as_created(client_version, status):
    raises(FakeAPI(), status, lambda kube: kube.create_job("ns1", JOB))


# Calls for which an absent object is an answer (None), not an error.
ABSENT_IS_NONE = {
    "delete_job": lambda kube: kube.delete_job("ns1", "shop-abc"),
    "get_migration": lambda kube: kube.get_migration("ns1", "shop"),
}


@pytest.mark.parametrize("status", ERRORS)
@pytest.mark.parametrize("call", ABSENT_IS_NONE.values(), ids=ABSENT_IS_NONE)
def test_a_failed_call_raises_and_none_only_when_absent(client_version, call, status):
    fake = FakeAPI()
    raises(fake, status, call)
    fake.answer(404)
    assert run_with_api(fake, call) is None


# ----------------------------------------------------------------------------- migrations


@pytest.mark.parametrize("status", [*ERRORS, 404, 422])
def test_a_failed_status_patch_raises(client_version, status):
    raises(FakeAPI(), status, lambda kube: kube.patch_migration_status("ns1", "shop", {}))


# ----------------------------------------------------------------------------- the gate


def test_lifting_a_gate_true_when_patched_false_when_the_pod_is_gone(client_version):
    fake = FakeAPI()
    fake.answer(200, {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}})
    lift = lambda kube: kube.remove_scheduling_gate("ns1", "p", "migrategate.io/migration")  # noqa: E731
    assert run_with_api(fake, lift) is True
    assert fake.requests == [("PATCH", "/api/v1/namespaces/ns1/pods/p")]
    fake.answer(404)
    assert run_with_api(fake, lift) is False


@pytest.mark.parametrize("status", [*ERRORS, 422])
def test_a_failed_gate_lift_raises(client_version, status):
    raises(FakeAPI(), status, lambda kube: kube.remove_scheduling_gate("ns1", "p", "g"))


# ----------------------------------------------------------------------------- events, transport


def test_an_event_is_best_effort_and_says_so(client_version, caplog):
    fake = FakeAPI()
    fake.answer(403)
    involved = {"metadata": {"name": "shop", "namespace": "ns1", "uid": "u1"}}
    with caplog.at_level(logging.WARNING):
        run_with_api(fake, lambda kube: kube.post_event(involved, "Normal", "JobCreated", "m"))
    assert "JobCreated" in caplog.text and "403" in caplog.text


def test_connection_errors_propagate():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        kube = Kube(k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{port}")))
        try:
            for call in (
                kube.list_jobs("ns1", "shop"),
                kube.create_job("ns1", JOB),
                kube.remove_scheduling_gate("ns1", "p", "g"),
                kube.get_migration("ns1", "shop"),
            ):
                with pytest.raises(aiohttp.ClientConnectionError):
                    await call
        finally:
            await kube.close()

    asyncio.run(scenario())
