"""Tests for the download core's pure parts: the address classification and allow-list of
musicgen_remix.weights.guard, and the limits of musicgen_remix.weights.download. The transfers themselves
are tested through their two users (tests/weights/test_fetch.py, tests/models/test_remote.py)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from musicgen_remix.errors import WeightsError
from musicgen_remix.weights.download import (
    DEADLINE_ENV,
    GRACE_S,
    MIN_RATE,
    MIN_RATE_ENV,
    STALL_BYTES,
    STALL_BYTES_ENV,
    STALL_S,
    STALL_S_ENV,
    UNKNOWN_SIZE_DEADLINE_S,
    Limits,
)
from musicgen_remix.weights.guard import ALLOWED_HOSTS_ENV, AddressGuard, AddressNotAllowed, is_internal

INTERNAL = [
    "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.1", "100.64.0.1",
    "169.254.169.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fe80::1%1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "2002:7f00:1::", "2002:a00:1::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "151.101.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("text", INTERNAL)
def test_internal_addresses(text: str) -> None:
    assert is_internal(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses(text: str) -> None:
    assert not is_internal(ipaddress.ip_address(text))


def _info(address: str, port: int = 80) -> tuple:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return (family, socket.SOCK_STREAM, 6, "", (address, port))


def test_default_guard_keeps_only_public_addresses() -> None:
    guard = AddressGuard.from_env({})
    infos = [_info("10.0.0.1"), _info("8.8.8.8"), _info("::1"), _info("2606:4700:4700::1111")]
    assert guard.permitted("mixed.example", infos) == [infos[1], infos[3]]
    with pytest.raises(AddressNotAllowed, match="internal.example is not an allowed host"):
        guard.permitted("internal.example", [_info("10.0.0.1"), _info("fe80::1%1")])


def test_allow_list_of_names_addresses_and_networks() -> None:
    guard = AddressGuard.from_env({ALLOWED_HOSTS_ENV: " Weights.Internal. , 127.0.0.1,[::1], 10.0.0.0/8 ,,bücher.de"})
    assert guard.names == frozenset({"weights.internal", "xn--bcher-kva.de"})  # as URL hosts arrive
    assert guard.allows_name("WEIGHTS.internal.") and not guard.allows_name("other.internal")
    assert guard.permitted("weights.internal", [_info("192.168.9.9")]) == [_info("192.168.9.9")]
    for allowed in ("127.0.0.1", "::1", "10.200.0.1", "::ffff:127.0.0.1", "::ffff:10.1.1.1"):
        assert guard.allows_address(ipaddress.ip_address(allowed)), allowed
    for refused in ("127.0.0.2", "192.168.0.1", "169.254.169.254", "::2"):
        assert not guard.allows_address(ipaddress.ip_address(refused)), refused


@pytest.mark.parametrize("entry", ["http://weights.example", "weights.example:8000", "a b", "-", "x..y", "-x.example"])
def test_bad_allow_list_entries(entry: str) -> None:
    with pytest.raises(WeightsError, match=ALLOWED_HOSTS_ENV):
        AddressGuard.from_env({ALLOWED_HOSTS_ENV: f"127.0.0.1,{entry}"})


def test_limits_defaults_and_derived_deadline() -> None:
    limits = Limits.from_env({})
    assert (limits.stall_s, limits.stall_bytes, limits.min_rate, limits.deadline_s) == (
        STALL_S, STALL_BYTES, MIN_RATE, None)
    assert limits.headers_deadline_s == GRACE_S
    assert limits.deadline_for(0) == GRACE_S
    assert limits.deadline_for(10 * (1 << 20)) == GRACE_S + 10 * (1 << 20) / MIN_RATE
    assert limits.deadline_for(None) == UNKNOWN_SIZE_DEADLINE_S


def test_limits_from_environment() -> None:
    limits = Limits.from_env({STALL_S_ENV: "2.5", STALL_BYTES_ENV: "4096", MIN_RATE_ENV: "1000",
                              DEADLINE_ENV: ""})
    assert (limits.stall_s, limits.stall_bytes, limits.min_rate) == (2.5, 4096, 1000.0)
    assert limits.deadline_for(5000) == GRACE_S + 5.0
    fixed = Limits.from_env({DEADLINE_ENV: "90"})
    assert fixed.headers_deadline_s == fixed.deadline_for(10**12) == fixed.deadline_for(None) == 90.0


@pytest.mark.parametrize(("name", "value"), [(STALL_S_ENV, "0"), (STALL_BYTES_ENV, "1.5"), (MIN_RATE_ENV, "fast"),
                                             (DEADLINE_ENV, "-1"), (DEADLINE_ENV, "inf"), (STALL_S_ENV, "nan")])
def test_bad_limits(name: str, value: str) -> None:
    with pytest.raises(WeightsError, match=name):
        Limits.from_env({name: value})
