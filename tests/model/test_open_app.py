"""open_app: the one entry to a checked app. Each part is built once and handed on, and the
checks on the graph and the links report at the key to fix."""

from __future__ import annotations

import pytest
import yaml

from planner.app import sites as app_sites
from planner.app.spec import Link
from planner.errors import InputError
from planner.model import open_app as opening
from planner.model.open_app import open_app
from tests import CAMERA


def test_each_part_is_built_once(monkeypatch):
    built = {"sites": 0, "graph": 0, "network": 0}

    def counting(name, make):
        def wrapper(*args, **kwargs):
            built[name] += 1
            return make(*args, **kwargs)
        return wrapper

    monkeypatch.setattr("planner.app.checks.resolve_sites", counting("sites", app_sites.resolve_sites))
    monkeypatch.setattr(opening, "EnsembleGraph", counting("graph", opening.EnsembleGraph))
    monkeypatch.setattr(opening, "Network", counting("network", opening.Network))
    checked = open_app(CAMERA)
    assert built == {"sites": 1, "graph": 1, "network": 1}
    assert set(checked.sites) == set(checked.app.sites) == {"camera", "mec", "cloud"}
    assert checked.sites["camera"].target.name == "jetson-orin-nano"
    assert checked.graph.count_paths() == 4
    assert checked.network.route("camera", "cloud", 1000).sites == ("camera", "mec", "cloud")


def test_with_links_rebuilds_the_network_only():
    checked = open_app(CAMERA)
    direct = checked.with_links([*checked.app.links, Link(between=("camera", "cloud"), bandwidth_mbps=10_000, rtt_ms=1)])
    assert direct.graph is checked.graph and direct.sites is checked.sites
    assert direct.network.route("camera", "cloud", 1000).sites == ("camera", "cloud")
    assert checked.network.route("camera", "cloud", 1000).sites == ("camera", "mec", "cloud")


@pytest.mark.parametrize("change, key, message", [
    (lambda app: app["flows"].append({"from": "fusion", "to": "detector", "bytes": 1}), "flows[1]",
     "the flows form a cycle: detector -> plate-reader -> fusion -> detector"),
    (lambda app: (app["links"].pop(0), app["models"]["detector"].update(sites=["mec"])), "flows[0]",
     "needs a route from camera to mec, and no links join them"),
    (lambda app: app["flows"].pop(2), "models.reid", "no source reaches model 'reid'"),
])
def test_graph_and_route_checks_name_the_key(tmp_path, change, key, message):
    app = yaml.safe_load(CAMERA.read_text())
    change(app)
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(app, sort_keys=False))
    with pytest.raises(InputError) as info:
        open_app(path)
    assert key in str(info.value) and message in str(info.value), str(info.value)
