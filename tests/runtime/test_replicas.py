"""A site run as several replicas, seen from the sites that call it (issue 11 item 4): `--peer`
takes every replica's address, the entry balances its requests over them (balance.Balancer), and
a forward's route may name only replicas of the sites it names. The end-to-end run of replicas
under `planner up` is tests/local/test_up_replicas.py. (No planner_runtime.proto here: its stubs
clash with tritonclient's, which other tests of this folder load in the same process.)"""

from __future__ import annotations

import pytest

from planner_runtime.__main__ import parse_peers
from planner_runtime.balance import Balancer, parse_route

A, B, C = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"


def test_peer_options_list_every_replica_in_order():
    assert parse_peers([f"far={A},{B}", f"far={C}", f"far={A}", f"entry={C}"]) == {"far": [A, B, C], "entry": [C]}
    for bad in ["far", "far=", f"={A}", f"far={A},nope"]:
        with pytest.raises(ValueError, match="SITE=HOST:PORT"):
            parse_peers([bad])


def test_balancer_takes_the_least_busy_replica_and_replicas_in_turn_when_equal():
    b = Balancer()
    picks = []
    for _ in range(4):  # one request at a time: in turn
        picks.append(b.pick("far", [A, B, C]))
        b.release(picks[-1])
    assert picks == [A, B, C, A]
    held = [b.pick("far", [A, B, C]) for _ in range(3)]  # three at once: one on each
    assert sorted(held) == [A, B, C]
    b.release(A)
    assert b.pick("far", [A, B, C]) == A  # the only one with nothing under way
    assert b.outstanding() == {A: 1, B: 1, C: 1}
    for a in (A, B, C):
        b.release(a)
    b.failed(A)  # refused a connection: passed over while another is up, even one busier
    assert b.pick("far", [A, B]) == B
    assert b.pick("far", [A, B]) == B
    assert b.pick("far", [A]) == A  # nothing else to take


def test_a_route_names_only_replicas_of_the_sites_it_names():
    site_of_address = {A: "far", B: "far", C: "entry"}
    assert parse_route(f'{{"far": "{B}", "entry": "{C}"}}', site_of_address) == {"far": B, "entry": C}
    assert parse_route("", site_of_address) == {}  # a forward without a route: each site's first replica
    for bad in [f'{{"far": "{C}"}}', '{"far": "127.0.0.1:9"}', f'{{"nowhere": "{A}"}}', f'["{A}"]', "{",
                '{"far": 7}']:
        assert parse_route(bad, site_of_address) is None, bad
