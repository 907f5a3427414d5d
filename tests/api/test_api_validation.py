"""Import requests: URL, address guard, name, type and metadata rules (pure)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from mediaimport_api.validation import (
    ImportRequest,
    SourceUrlError,
    checked,
    policy_for,
)
from mediaimport_job.filenames import sanitize
from mediaimport_job.netguard import literal_address
from pydantic import ValidationError
from support.nesting import nested

OPEN = policy_for([])


def request(**fields: Any) -> ImportRequest:
    return ImportRequest.model_validate({"url": "https://cdn.test/v.mp4", **fields})


@pytest.mark.parametrize(
    "url",
    ["ftp://cdn.test/v.mp4", "file:///etc/passwd", "javascript:alert(1)", "https://",
     "https://cdn.test/a b.mp4", "cdn.test/v.mp4", "https://cdn.test:99999/v.mp4",
     "https://cdn.test/" + "a" * 4096, "gopher://x/"],
)
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        request(url=url)


def test_the_scheme_is_lowered() -> None:
    assert request(url="HTTPS://cdn.test/v.mp4").url == "https://cdn.test/v.mp4"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254", "[::ffff:127.0.0.1]", "0.0.0.0",
     "2130706433", "0x7f000001", "127.1", "0177.0.0.1", "[fd00::1]", "100.64.0.1",
     # A trailing dot: browsers read these as the address; the check must too.
     "127.0.0.1.", "127.1.", "10.1.2.3."],
)
def test_literal_private_addresses_are_refused_by_the_jobs_guard(host: str) -> None:
    with pytest.raises(SourceUrlError, match="refused"):
        checked(request(url=f"http://{host}/v.mp4"), OPEN)


def test_allowed_networks_open_their_addresses() -> None:
    policy = policy_for(["127.0.0.2/32"])
    assert checked(request(url="http://127.0.0.2:8080/v.mp4"), policy).url
    with pytest.raises(SourceUrlError):
        checked(request(url="http://127.0.0.3/v.mp4"), policy)


def test_host_names_are_left_to_the_job() -> None:
    # Not resolved here: the job resolves and checks every address itself.
    assert checked(request(url="http://localhost.test/v.mp4"), OPEN).url


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "localhost.", "api.localhost", "a.b.localhost:8080"],
)
def test_localhost_names_are_loopback_without_a_lookup(host: str) -> None:
    # RFC 6761: these names always mean loopback; in a pod they resolve to 127.0.0.1
    # and ::1, which the job refuses. Refused now rather than failing in a pod.
    with pytest.raises(SourceUrlError, match="loopback"):
        checked(request(url=f"http://{host}/v.mp4"), OPEN)


def test_localhost_names_follow_the_allowed_networks_for_both_loopbacks() -> None:
    both = policy_for(["127.0.0.0/8", "::1/128"])
    assert checked(request(url="http://localhost:8080/v.mp4"), both).url
    with pytest.raises(SourceUrlError, match="::1"):
        checked(request(url="http://localhost:8080/v.mp4"), policy_for(["127.0.0.0/8"]))


@pytest.mark.parametrize(
    ("url", "message"),
    [("https://user:secret@cdn.test/v.mp4", "credentials"),
     ("https://cdn.test@evil.test/v.mp4", "credentials"),
     ("https://@cdn.test/v.mp4", "credentials"),
     ("https://cdn.test/v\x7f.mp4", "control characters"),
     ("https://cdn.test:0/v.mp4", "port")],
)
def test_urls_the_job_would_refuse_are_refused_first(url: str, message: str) -> None:
    # The same rules as the job's own (mediaimport_job.urls): an import accepted here
    # never fails in its pod for the form of its URL.
    with pytest.raises(ValidationError, match=message):
        request(url=url)


def test_literal_address_parses_the_forms_getaddrinfo_accepts() -> None:
    assert literal_address("127.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("[::1]") == ipaddress.ip_address("::1")
    assert literal_address("cdn.test") is None
    assert literal_address("1e100.net") is None
    assert literal_address("127.0.0.1.") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("0x7f.1.") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("cdn.test.") is None
    assert literal_address("1.2.3.4..") is None


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "evil\u202egpj.exe", "  spaced   out .mp4", "thumbnail.jpg",
             "a" * 250 + ".mp4", "ok.mp4"],
)
def test_names_are_sanitised_as_the_job_does(name: str) -> None:
    assert request(name=name).name == sanitize(name)


@pytest.mark.parametrize("name", ["...", "///", "\u202e", ""])
def test_names_without_usable_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="usable"):
        request(name=name)


def test_type_is_an_enum() -> None:
    assert request(type="image").type == "image"
    with pytest.raises(ValidationError):
        request(type="document")


def test_metadata_limits() -> None:
    assert request(metadata={f"k{i}": i for i in range(64)}).metadata
    with pytest.raises(ValidationError, match="64 keys"):
        request(metadata={f"k{i}": i for i in range(65)})
    with pytest.raises(ValidationError, match="16 KiB"):
        request(metadata={"prompt": "x" * 16 * 1024})


def test_display_name_and_guessed_type() -> None:
    source = checked(request(url="https://cdn.test/dir/clip%20one.MOV"), OPEN)
    assert (source.display_name, source.guessed_type) == ("clip one.MOV", "video")
    assert checked(request(url="https://cdn.test/"), OPEN).display_name == "media"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [({"note": "a\x00b"}, "NUL"), ({"a\x00": 1}, "NUL"), ({"x": {"y": ["\x00"]}}, "NUL"),
     ({"s": "\ud800"}, "Unicode"), ({"n": float("nan")}, "finite"),
     ({"n": float("inf")}, "finite"), ({"n": 10**400}, "64 bits"), ({"n": -(2**63) - 1}, "64 bits"),
     ({"deep": nested(33)}, "deeper than 32"), ({"deep": nested(5000)}, "deeper than 32")],
)
def test_metadata_postgres_or_kubernetes_cannot_store_is_refused(
    metadata: dict[str, Any], message: str
) -> None:
    # Each once made a 500: Postgres refuses \u0000 in JSONB, Kubernetes numbers beyond
    # 64 bits, serialising deep nesting hits Python's recursion limit; NaN became null.
    with pytest.raises(ValidationError, match=message):
        request(metadata=metadata)


def test_metadata_at_the_limits_is_kept() -> None:
    metadata = {"deep": nested(31), "big": 2**63 - 1, "small": -(2**63), "f": 1.5,
                "text": "ünïcode ✓", "none": None, "yes": True}
    assert request(metadata=metadata).metadata == metadata
