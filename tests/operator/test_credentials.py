"""Per-import channel credentials: good for one import (namespace, name, uid) until their
expiry, checked by any replica holding the key ring, across a key rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from mediaimport_operator.credentials import (
    CredentialRefused,
    KeyRing,
    KeyRingError,
    Refusal,
    check,
    mint,
    peek_expiry,
    precheck,
)

KEY_1 = b"k" * 32
KEY_2 = b"second-key-of-at-least-32-bytes!"
NOW = 1_800_000_000
A = {"namespace": "media", "name": "sunset", "uid": "uid-a"}


def refusal(ring: KeyRing, token: str, *, now: float = NOW,
            who: dict[str, str] | None = None) -> Refusal:
    with pytest.raises(CredentialRefused) as caught:
        check(ring, token, now=now, **{**A, **(who or {})})
    return caught.value.reason


def test_a_credential_is_good_for_its_import_until_it_expires() -> None:
    ring = KeyRing({"1": KEY_1})
    token = mint(ring, expires_at=NOW + 60, **A)
    check(ring, token, now=NOW, **A)
    check(ring, token, now=NOW + 59.9, **A)
    assert refusal(ring, token, now=NOW + 60) is Refusal.EXPIRED
    assert peek_expiry(token) == NOW + 60


@pytest.mark.parametrize("other", [
    {"namespace": "other"}, {"name": "sunrise"}, {"uid": "uid-b"},
])
def test_a_credential_is_refused_for_any_other_import(other: dict[str, str]) -> None:
    ring = KeyRing({"1": KEY_1})
    token = mint(ring, expires_at=NOW + 60, **A)
    assert refusal(ring, token, who=other) is Refusal.WRONG_IMPORT


def test_a_changed_expiry_breaks_the_credential() -> None:
    ring = KeyRing({"1": KEY_1})
    version, kid, expiry, mac = mint(ring, expires_at=NOW + 60, **A).split(".")
    longer = ".".join([version, kid, str(int(expiry) + 3600), mac])
    assert refusal(ring, longer) is Refusal.WRONG_IMPORT


def test_fields_cannot_be_shifted_between_namespace_and_name() -> None:
    ring = KeyRing({"1": KEY_1})
    token = mint(ring, namespace="a-b", name="c", uid="u", expires_at=NOW + 60)
    with pytest.raises(CredentialRefused):
        check(ring, token, namespace="a", name="b-c", uid="u", now=NOW)


@pytest.mark.parametrize("token", [
    "", "Bearer x", "v1.1.123", "v2.1.1800000060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.1.soon.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "v1..1800000060.AAAA",
    "v1.1.1800000060.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", "v1.1.1." + "A" * 300,
])
def test_malformed_credentials_are_refused_as_such(token: str) -> None:
    assert refusal(KeyRing({"1": KEY_1}), token) is Refusal.MALFORMED


def test_another_ring_does_not_accept_the_credential() -> None:
    token = mint(KeyRing({"1": KEY_1}), expires_at=NOW + 60, **A)
    assert refusal(KeyRing({"1": KEY_2}), token) is Refusal.WRONG_IMPORT
    assert refusal(KeyRing({"2": KEY_2}), token) is Refusal.UNKNOWN_KEY


def test_the_highest_key_signs_numbers_compared_as_numbers() -> None:
    ring = KeyRing({"9": KEY_1, "10": KEY_2, "old": KEY_1})
    assert ring.signing_key_id == "10"
    assert mint(ring, expires_at=NOW + 60, **A).split(".")[1] == "10"
    assert KeyRing({"alpha": KEY_1, "beta": KEY_2}).signing_key_id == "beta"


def test_every_key_of_the_ring_verifies() -> None:
    old = mint(KeyRing({"1": KEY_1}), expires_at=NOW + 60, **A)
    rotated = KeyRing({"1": KEY_1, "2": KEY_2})
    check(rotated, old, now=NOW, **A)
    assert mint(rotated, expires_at=NOW + 60, **A).split(".")[1] == "2"


def test_a_ring_needs_usable_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError):
        KeyRing({})
    with pytest.raises(KeyRingError):
        KeyRing({"1": b"short"})
    with pytest.raises(KeyRingError):
        KeyRing({"bad.id": KEY_1})
    with pytest.raises(KeyRingError):
        KeyRing.from_directory(tmp_path)  # empty
    with pytest.raises(KeyRingError):
        KeyRing.from_directory(tmp_path / "missing")


def secret_mount(directory: Path, keys: dict[str, bytes]) -> None:
    """Keys laid out as the kubelet mounts a Secret: files in a dated directory, reached
    through ``..data`` and one symbolic link per key."""
    for stale in directory.glob("*"):
        if stale.is_symlink():
            stale.unlink()
    dated = directory / f"..2026_{len(list(directory.glob('..2026_*')))}"
    dated.mkdir()
    for key_id, key in keys.items():
        (dated / key_id).write_bytes(key + b"\n")
    (directory / "..data").symlink_to(dated.name)
    for key_id in keys:
        (directory / key_id).symlink_to(f"..data/{key_id}")


def test_a_mounted_secret_is_read_and_an_unknown_key_reads_it_again(tmp_path: Path) -> None:
    secret_mount(tmp_path, {"1": KEY_1})
    clock = [0.0]
    ring = KeyRing.from_directory(tmp_path, reload_interval=5.0, clock=lambda: clock[0])
    assert ring.key_ids == ["1"]  # trailing newline not part of the key, ..data skipped
    elsewhere = KeyRing({"1": KEY_1, "2": KEY_2})  # a replica that has the new key already
    token = mint(elsewhere, expires_at=NOW + 60, **A)

    secret_mount(tmp_path, {"1": KEY_1, "2": KEY_2})
    clock[0] = 1.0  # too soon after the last reading: refused without reading
    assert refusal(ring, token) is Refusal.UNKNOWN_KEY
    clock[0] = 6.0
    check(ring, token, now=NOW, **A)
    assert ring.key_ids == ["1", "2"]


def test_a_broken_reload_keeps_the_keys_held(tmp_path: Path) -> None:
    (tmp_path / "1").write_bytes(KEY_1)
    clock = [0.0]
    ring = KeyRing.from_directory(tmp_path, reload_interval=1.0, clock=lambda: clock[0])
    token = mint(ring, expires_at=NOW + 60, **A)
    (tmp_path / "1").unlink()
    clock[0] = 2.0
    ring.reload()
    check(ring, token, now=NOW, **A)


def test_the_precheck_refuses_without_knowing_the_import() -> None:
    ring = KeyRing({"1": KEY_1})
    precheck(ring, mint(ring, expires_at=NOW + 60, **A), now=NOW)
    cases = {
        Refusal.MALFORMED: "not-a-credential",
        Refusal.EXPIRED: mint(ring, expires_at=NOW, **A),
        Refusal.UNKNOWN_KEY: mint(KeyRing({"7": KEY_2}), expires_at=NOW + 60, **A),
    }
    for reason, token in cases.items():
        with pytest.raises(CredentialRefused) as caught:
            precheck(ring, token, now=NOW)
        assert caught.value.reason is reason
