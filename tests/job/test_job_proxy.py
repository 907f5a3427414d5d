"""Downloads through an explicit proxy (MEDIAIMPORT_DOWNLOAD_PROXY / --download-proxy): the
guard still resolves and checks the target, and the proxy is asked to tunnel to the
checked address, never to a name it could resolve elsewhere. A real CONNECT proxy on
loopback records what it was asked for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from support.connectproxy import ConnectProxy
from support.jobrun import JobRunner
from support.media import MediaLibrary
from support.origin import Origin

if TYPE_CHECKING:
    from .conftest import AssertFailed


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as server:
        yield server


def _port(origin: Origin) -> int:
    return int(origin.url("/").rsplit(":", 1)[1].split("/", 1)[0])


def test_the_download_goes_through_the_proxy_to_the_checked_address(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, proxy: ConnectProxy
) -> None:
    origin.add(media.path("h264.mp4"), "via-proxy.mp4")
    run = run_job(origin.url("/files/via-proxy.mp4"),
                  env={"MEDIAIMPORT_DOWNLOAD_PROXY": proxy.url})
    assert run.returncode == 0, run.stderr
    assert run.result["size"] == media.path("h264.mp4").stat().st_size
    assert proxy.targets == [f"127.0.0.2:{_port(origin)}"]
    assert f"through the proxy 127.0.0.1:{proxy.address[1]}" in run.stderr


def test_a_refused_address_is_refused_before_the_proxy_hears_of_it(
    forbidden_origin: Origin, run_job: JobRunner, proxy: ConnectProxy,
    assert_failed: AssertFailed,
) -> None:
    before = forbidden_origin.hits("/files/secret")
    run = run_job(forbidden_origin.url("/files/secret"), "--download-proxy", proxy.url)
    assert_failed(run, "BlockedAddress", retryable=False)
    assert proxy.targets == []
    assert forbidden_origin.hits("/files/secret") == before


def test_the_proxy_is_asked_for_the_resolved_address_not_the_name(
    media: MediaLibrary, forbidden_origin: Origin, run_job: JobRunner, proxy: ConnectProxy
) -> None:
    """A proxy given the name would resolve it again: DNS could then point it anywhere."""
    forbidden_origin.add(media.path("image.png"), "by-name.png")
    url = f"http://localhost:{_port(forbidden_origin)}/files/by-name.png"
    run = run_job(url, "--download-proxy", proxy.url,
                  "--allow-network", "127.0.0.1/32", "--allow-network", "::1/128")
    assert run.returncode == 0, run.stderr
    assert proxy.targets, "the proxy was not used"
    assert all("localhost" not in target for target in proxy.targets)
    assert proxy.targets[-1] == f"127.0.0.1:{_port(forbidden_origin)}"


def test_proxy_credentials_are_sent_and_never_shown(
    media: MediaLibrary, origin: Origin, run_job: JobRunner
) -> None:
    origin.add(media.path("image.png"), "proxy-auth.png")
    with ConnectProxy(credentials="importer:pr0xy-pa55") as proxy:
        run = run_job(origin.url("/files/proxy-auth.png"), "--download-proxy", proxy.url)
    assert run.returncode == 0, run.stderr
    assert proxy.targets == [f"127.0.0.2:{_port(origin)}"]
    assert "pr0xy-pa55" not in run.stderr + run.stdout


def test_a_proxy_that_refuses_the_tunnel_is_a_retryable_failure(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    with ConnectProxy(credentials="importer:pr0xy-pa55") as proxy:
        host, port = proxy.address
        run = run_job(origin.url("/files/anything.mp4"), "--retries", "0",
                      "--download-proxy", f"http://{host}:{port}")
    document = assert_failed(run, "SourceUnavailable", retryable=True)
    assert "407" in document["error"]["message"]


@pytest.mark.parametrize(
    "value", ["https://proxy.example:3128", "socks5://127.0.0.1:1080", "http://:3128",
              "http://proxy.example:3128/path", "http://proxy.example:notaport"],
)
def test_a_bad_proxy_url_is_an_invalid_argument(
    value: str, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    run = run_job("https://cdn.example/x.mp4", "--download-proxy", value)
    document = assert_failed(run, "InvalidArgument", retryable=False)
    assert document["error"]["message"].startswith("--download-proxy")
