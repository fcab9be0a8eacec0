"""Cross-reference and graph checks on a parsed app: each failure is one InputError that
names the key and line to fix."""

from __future__ import annotations

import ast
from itertools import product

import networkx as nx

from planner.domains import candidate_sites
from planner.graph import EnsembleGraph
from planner.loader import LoadedApp
from planner.network import Network


def _one_of(names) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


def check_names(la: LoadedApp) -> None:
    app = la.app
    owner: dict[str, str] = {}
    for section in ("sources", "models", "sinks"):
        for name in getattr(app, section):
            if name in owner:
                raise la.error(f"name '{name}' is used by both {owner[name]} and {section}", (section, name))
            owner[name] = section


def check_sites(la: LoadedApp) -> None:
    from planner.sites import resolve_sites

    resolve_sites(la)  # raises on unknown or malformed targets


def check_links(la: LoadedApp) -> None:
    app = la.app
    seen: dict[frozenset, int] = {}
    for i, link in enumerate(app.links):
        for j, site in enumerate(link.between):
            if site not in app.sites:
                raise la.error(f"unknown site '{site}' (sites: {_one_of(app.sites)})", ("links", i, "between", j))
        pair = frozenset(link.between)
        if pair in seen:
            raise la.error(f"duplicate link between {link.between[0]} and {link.between[1]} "
                           f"(first in links[{seen[pair]}])", ("links", i, "between"))
        seen[pair] = i


def _check_python_step(la: LoadedApp, name: str, spec: str) -> None:
    key = ("models", name, "python")
    file, function = spec.rsplit(":", 1)
    path = la.resolve(file)
    if not path.is_file():
        raise la.error(f"python step file not found: {path}", key)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise la.error(f"{path}:{exc.lineno}: syntax error: {exc.msg}", key) from None
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if function not in defined:
        raise la.error(f"{path} defines no function '{function}' (functions: {_one_of(defined)})", key)


def check_models(la: LoadedApp) -> None:
    app = la.app
    for name, node in app.models.items():
        for i, site in enumerate(node.sites or []):
            if site not in app.sites:
                raise la.error(f"unknown site '{site}' (sites: {_one_of(app.sites)})", ("models", name, "sites", i))
        for site in node.profile:
            if site not in app.sites:
                raise la.error(f"profile for unknown site '{site}' (sites: {_one_of(app.sites)})",
                               ("models", name, "profile", site))
        if node.onnx is not None and not la.resolve(node.onnx).is_file():
            raise la.error(f"ONNX file not found: {la.resolve(node.onnx)}", ("models", name, "onnx"))
        if node.python is not None:
            _check_python_step(la, name, node.python)
        for i, file in enumerate(node.files):
            path = la.resolve(file)
            if not path.is_file():
                raise la.error(f"file not found: {path}", ("models", name, "files", i))
            if la.base_dir.resolve() not in path.parents:
                raise la.error(f"{file} is outside the app's directory: the bundle ships files beside app.yaml",
                               ("models", name, "files", i))
        if node.kind == "given":
            for i, site in enumerate(node.sites or []):
                if site not in node.profile:
                    raise la.error(f"'{name}' may run on {site} but has no profile there and no onnx/python "
                                   "to profile", ("models", name, "sites", i))
        if not candidate_sites(app, name):
            raise la.error(f"no site may host '{name}': give `onnx:`/`python:` or a profile for a site it "
                           "may use", ("models", name))


def check_endpoints(la: LoadedApp) -> None:
    app = la.app
    for section in ("sources", "sinks"):
        for name, item in getattr(app, section).items():
            if item.site not in app.sites:
                raise la.error(f"unknown site '{item.site}' (sites: {_one_of(app.sites)})", (section, name, "site"))


def check_flows(la: LoadedApp) -> None:
    app = la.app
    producers = set(app.sources) | set(app.models)
    consumers = set(app.models) | set(app.sinks)
    seen: dict[tuple, int] = {}
    fed: dict[tuple[str, str], int] = {}
    for i, flow in enumerate(app.flows):
        if flow.from_ not in producers:
            what = "a sink sends nothing" if flow.from_ in app.sinks else "unknown source or model"
            raise la.error(f"{what}: '{flow.from_}' (sources and models: {_one_of(producers)})", ("flows", i, "from"))
        if flow.to not in consumers:
            what = "a source receives nothing" if flow.to in app.sources else "unknown model or sink"
            raise la.error(f"{what}: '{flow.to}' (models and sinks: {_one_of(consumers)})", ("flows", i, "to"))
        if flow.from_ == flow.to:
            raise la.error(f"flow from '{flow.from_}' to itself", ("flows", i))
        ident = (flow.from_, flow.output, flow.to, flow.input)
        if ident in seen:
            raise la.error(f"duplicate flow {flow.from_} -> {flow.to} (same as flows[{seen[ident]}])", ("flows", i))
        seen[ident] = i
        consumer = app.models.get(flow.to)
        if consumer is not None and consumer.python and consumer.inputs:
            declared = list(consumer.inputs)
            if flow.input is None and len(declared) > 1:
                raise la.error(f"'{flow.to}' has inputs {', '.join(declared)}: name the one this flow feeds "
                               "with `input:`", ("flows", i))
            target_input = flow.input or declared[0]
            if target_input not in declared:
                raise la.error(f"'{flow.to}' has no input '{target_input}' (inputs: {', '.join(declared)})",
                               ("flows", i, "input"))
            if (flow.to, target_input) in fed:
                raise la.error(f"input '{target_input}' of '{flow.to}' is already fed by flows[{fed[flow.to, target_input]}]",
                               ("flows", i))
            fed[flow.to, target_input] = i
    for name, node in app.models.items():
        if node.python and node.inputs:
            for inp in node.inputs:
                if (name, inp) not in fed and any(f.to == name for f in app.flows):
                    raise la.error(f"input '{inp}' of '{name}' is fed by no flow", ("models", name, "inputs", inp))


def _flow_index(la: LoadedApp, a: str, b: str) -> int:
    return next(i for i, f in enumerate(la.app.flows) if f.from_ == a and f.to == b)


def check_graph(la: LoadedApp, graph: EnsembleGraph) -> None:
    app, g = la.app, graph.g
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [u for u, _ in cycle] + [cycle[0][0]]
        raise la.error(f"the flows form a cycle: {' -> '.join(names)}", ("flows", _flow_index(la, *cycle[0][:2])))
    reached = set().union(*(nx.descendants(g, s) for s in app.sources))
    for name in app.models:
        if name not in reached:
            raise la.error(f"no source reaches model '{name}': add a flow into it", ("models", name))
    for name in app.sinks:
        if g.in_degree(name) == 0:
            raise la.error(f"no model feeds sink '{name}': add a flow into it", ("sinks", name))
    sinks = set(app.sinks)
    for name in app.models:
        if not (nx.descendants(g, name) & sinks):
            raise la.error(f"model '{name}' reaches no sink: its output is never used", ("models", name))


def check_routes(la: LoadedApp, network: Network) -> None:
    app = la.app

    def sites(node: str) -> list[str]:
        if node in app.sources:
            return [app.sources[node].site]
        if node in app.sinks:
            return [app.sinks[node].site]
        return candidate_sites(app, node)

    for i, flow in enumerate(app.flows):
        a, b = sites(flow.from_), sites(flow.to)
        if not any(s == t or network.connected(s, t) for s, t in product(a, b)):
            raise la.error(f"flow {flow.from_} -> {flow.to} needs a route from {_one_of(a)} to {_one_of(b)}, "
                           "and no links join them", ("flows", i))


def check_app(la: LoadedApp) -> EnsembleGraph:
    check_names(la)
    check_sites(la)
    check_links(la)
    check_models(la)
    check_endpoints(la)
    check_flows(la)
    graph = EnsembleGraph(la.app)
    check_graph(la, graph)
    check_routes(la, Network(la.app))
    return graph
