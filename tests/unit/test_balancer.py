"""The balanced clients' policy (aiges.client.balancer): which provider, and what may be retried."""

from __future__ import annotations

import random
from collections import Counter

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiges.client.balancer import (
    LATENCY_TIE_FACTOR,
    Balancer,
    Entry,
    Outcome,
    classify_code,
    classify_status,
    may_retry,
)


class Listing:
    """A provider source the test edits, as etcd would change."""

    def __init__(self, **providers: dict) -> None:
        self.values: dict[str, Entry] = {}
        for address, value in providers.items():
            self.put(address, **value)

    def put(self, address: str, lease: int = 1, **value) -> None:
        self.values[address] = Entry({"health": "SERVING", "licences_free": 10, **value}, lease)

    def entries(self) -> dict[str, Entry]:
        return dict(self.values)


def balancer(listing: Listing, seed: int = 7) -> Balancer:
    return Balancer(listing, rng=random.Random(seed))


@pytest.mark.parametrize(
    ("code", "details", "outcome"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: connection refused",
            Outcome.UNREACHED,
        ),
        (grpc.StatusCode.UNAVAILABLE, "Stream removed (Received RST_STREAM with error code 7)", Outcome.UNREACHED),
        (grpc.StatusCode.UNAVAILABLE, "Stream removed (Received RST_STREAM with error code 2)", Outcome.LOST),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", Outcome.LOST),
        (grpc.StatusCode.UNAVAILABLE, "keepalive watchdog timeout", Outcome.LOST),
        (grpc.StatusCode.CANCELLED, "Cancelled on the server side", Outcome.LOST),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", Outcome.FAILED),
        (grpc.StatusCode.INTERNAL, "boom", Outcome.FAILED),
    ],
)
def test_what_a_grpc_failure_says_about_the_call(code, details, outcome):
    assert classify_status(code, details) is outcome


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0, Outcome.OK),
        (10110, Outcome.REFUSED),
        (10909, Outcome.FAILED),
        (10109, Outcome.FAILED),
        (10107, Outcome.FAILED),
    ],
)
def test_what_an_aiges_code_says(code, outcome):
    assert classify_code(code) is outcome


@pytest.mark.parametrize(
    ("outcome", "idempotent", "retry"),
    [
        (Outcome.REFUSED, False, True),
        (Outcome.UNREACHED, False, True),
        (Outcome.LOST, False, False),
        (Outcome.LOST, True, True),
        (Outcome.FAILED, True, False),
        (Outcome.OK, True, False),
    ],
)
def test_the_retry_rule(outcome, idempotent, retry):
    assert may_retry(outcome, idempotent) is retry


def test_only_serving_providers_are_chosen_and_free_ones_first():
    listing = Listing(a={}, b={"health": "NOT_SERVING"}, c={"licences_free": 0})
    chooser = balancer(listing)
    assert {chooser.choose() for _ in range(50)} == {"a"}
    assert chooser.choose(exclude=["a"]) == "c"  # full, but the only one left that serves
    assert chooser.choose(exclude=["a", "c"]) is None


def test_a_provider_marked_down_is_left_out_until_its_channel_is_ready_again():
    listing = Listing(a={}, b={})
    chooser = balancer(listing)
    chooser.end("a", chooser.begin("a"), Outcome.UNREACHED)
    assert chooser.is_down("a")
    assert {chooser.choose() for _ in range(50)} == {"b"}
    chooser.mark_up("a", "connected")
    assert {chooser.choose() for _ in range(50)} == {"a", "b"}


def test_a_provider_registered_under_a_new_lease_is_tried_again():
    listing = Listing(a={}, b={})
    events = []
    chooser = Balancer(listing, rng=random.Random(1), on_event=lambda *e: events.append(e))
    chooser.end("a", chooser.begin("a"), Outcome.LOST)
    listing.put("a", lease=1, licences_free=8)  # the same registration rewritten: still down
    assert {chooser.choose() for _ in range(30)} == {"b"}
    listing.put("a", lease=2)  # restarted: registered anew
    assert "a" in {chooser.choose() for _ in range(30)}
    assert events == [("down", "a", "connection lost"), ("up", "a", "registered again")]


def test_when_every_provider_is_down_the_one_down_longest_is_tried():
    listing = Listing(a={}, b={})
    chooser = balancer(listing)
    chooser.mark_down("b", "connection failed")
    chooser.mark_down("a", "connection failed")
    assert chooser.choose() == "b"


def test_a_provider_that_refused_is_passed_over_for_a_moment():
    listing = Listing(a={}, b={})
    chooser = balancer(listing)
    chooser.end("a", chooser.begin("a"), Outcome.REFUSED)
    assert {chooser.choose() for _ in range(30)} == {"b"}
    assert chooser.choose(exclude=["b"]) == "a"


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=2, max_size=8), st.integers(0, 1000))
def test_the_provider_with_the_most_calls_outstanding_is_never_chosen(outstanding, seed):
    addresses = [f"h{i}" for i in range(len(outstanding))]
    chooser = Balancer(Listing(**{a: {} for a in addresses}), rng=random.Random(seed))
    for address, count in zip(addresses, outstanding, strict=True):
        for _ in range(count):
            chooser.begin(address)
    most = max(outstanding)
    chosen = chooser.choose()
    assert chosen is not None
    assert outstanding[addresses.index(chosen)] < most or outstanding.count(most) > 1


def test_equal_providers_share_evenly_and_a_clearly_slower_one_loses_ties():
    addresses = ["a", "b", "c", "d"]
    chooser = balancer(Listing(**{a: {} for a in addresses}), seed=3)
    for address in addresses:  # each answered one call in 40 ms
        chooser.end(address, chooser.begin(address), Outcome.OK)
        chooser.peers[address].ewma_s = 0.040
    chooser.peers["b"].ewma_s = 0.040 * (LATENCY_TIE_FACTOR - 0.2)  # noise: no preference
    even = Counter(chooser.choose() for _ in range(4000))
    assert max(even.values()) / min(even.values()) < 1.15, even
    chooser.peers["d"].ewma_s = 0.160
    skewed = Counter(chooser.choose() for _ in range(4000))
    assert skewed["d"] == 0, skewed  # idle providers all tie on outstanding: the slow one never wins
