"""Cross-reference checks on a parsed app: each failure is one InputError that names the key
and line to fix."""

from __future__ import annotations

import ast

from planner.app.loader import LoadedApp
from planner.app.sites import ResolvedSite, resolve_sites
from planner.errors import clipped


def _is_file(path) -> bool:
    """Path.is_file, and False for a path the OS cannot look up at all (a name too long)."""
    try:
        return path.is_file()
    except OSError:
        return False


def one_of(names) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


def check_names(loaded: LoadedApp) -> None:
    app = loaded.app
    owner: dict[str, str] = {}
    for section in ("sources", "models", "sinks"):
        for name in getattr(app, section):
            if name in owner:
                raise loaded.error(f"name '{name}' is used by both {owner[name]} and {section}", (section, name))
            owner[name] = section


def check_links(loaded: LoadedApp) -> None:
    app = loaded.app
    seen: dict[frozenset, int] = {}
    for i, link in enumerate(app.links):
        for j, site in enumerate(link.between):
            if site not in app.sites:
                raise loaded.error(f"unknown site '{site}' (sites: {one_of(app.sites)})", ("links", i, "between", j))
        pair = frozenset(link.between)
        if pair in seen:
            raise loaded.error(f"duplicate link between {link.between[0]} and {link.between[1]} "
                               f"(first in links[{seen[pair]}])", ("links", i, "between"))
        seen[pair] = i


def _check_python_step(loaded: LoadedApp, name: str) -> None:
    key = ("models", name, "python")
    file, function = loaded.app.models[name].python_step
    path = loaded.resolve(file)
    if not _is_file(path):
        raise loaded.error(f"python step file not found: {clipped(str(path), 300)}", key)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise loaded.error(f"{path}:{exc.lineno}: syntax error: {exc.msg}", key) from None
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if function not in defined:
        raise loaded.error(f"{path} defines no function '{function}' (functions: {one_of(defined)})", key)


def check_models(loaded: LoadedApp) -> None:
    app = loaded.app
    for name, node in app.models.items():
        for i, site in enumerate(node.sites or []):
            if site not in app.sites:
                raise loaded.error(f"unknown site '{site}' (sites: {one_of(app.sites)})", ("models", name, "sites", i))
        for site in node.profile:
            if site not in app.sites:
                raise loaded.error(f"profile for unknown site '{site}' (sites: {one_of(app.sites)})",
                                   ("models", name, "profile", site))
        if node.onnx is not None and not _is_file(loaded.resolve(node.onnx)):
            raise loaded.error(f"ONNX file not found: {clipped(str(loaded.resolve(node.onnx)), 300)}",
                               ("models", name, "onnx"))
        if node.python is not None:
            _check_python_step(loaded, name)
        for i, file in enumerate(node.files):
            path = loaded.resolve(file)
            if not _is_file(path):
                raise loaded.error(f"file not found: {clipped(str(path), 300)}", ("models", name, "files", i))
            if loaded.beside(file) is None:
                raise loaded.error(f"{file} is outside the app's directory: the bundle ships files beside app.yaml",
                                   ("models", name, "files", i))
        if node.kind == "given":
            for i, site in enumerate(node.sites or []):
                if site not in node.profile:
                    raise loaded.error(f"'{name}' may run on {site} but has no profile there and no onnx/python "
                                       "to profile", ("models", name, "sites", i))
        if not app.candidate_sites(name):
            raise loaded.error(f"no site may host '{name}': give `onnx:`/`python:` or a profile for a site it "
                               "may use", ("models", name))


def check_endpoints(loaded: LoadedApp) -> None:
    app = loaded.app
    for section in ("sources", "sinks"):
        for name, item in getattr(app, section).items():
            if item.site not in app.sites:
                raise loaded.error(f"unknown site '{item.site}' (sites: {one_of(app.sites)})", (section, name, "site"))


def check_flows(loaded: LoadedApp) -> None:
    app = loaded.app
    producers = set(app.sources) | set(app.models)
    consumers = set(app.models) | set(app.sinks)
    seen: dict[tuple, int] = {}
    fed: dict[tuple[str, str], int] = {}
    for i, flow in enumerate(app.flows):
        if flow.from_ not in producers:
            what = "a sink sends nothing" if flow.from_ in app.sinks else "unknown source or model"
            raise loaded.error(f"{what}: '{flow.from_}' (sources and models: {one_of(producers)})",
                               ("flows", i, "from"))
        if flow.to not in consumers:
            what = "a source receives nothing" if flow.to in app.sources else "unknown model or sink"
            raise loaded.error(f"{what}: '{flow.to}' (models and sinks: {one_of(consumers)})", ("flows", i, "to"))
        if flow.from_ == flow.to:
            raise loaded.error(f"flow from '{flow.from_}' to itself", ("flows", i))
        ident = (flow.from_, flow.output, flow.to, flow.input)
        if ident in seen:
            raise loaded.error(f"duplicate flow {flow.from_} -> {flow.to} (same as flows[{seen[ident]}])", ("flows", i))
        seen[ident] = i
        consumer = app.models.get(flow.to)
        if consumer is not None and consumer.python and consumer.inputs:
            declared = list(consumer.inputs)
            if flow.input is None and len(declared) > 1:
                raise loaded.error(f"'{flow.to}' has inputs {', '.join(declared)}: name the one this flow feeds "
                                   "with `input:`", ("flows", i))
            target_input = flow.input or declared[0]
            if target_input not in declared:
                raise loaded.error(f"'{flow.to}' has no input '{target_input}' (inputs: {', '.join(declared)})",
                                   ("flows", i, "input"))
            if (flow.to, target_input) in fed:
                raise loaded.error(f"input '{target_input}' of '{flow.to}' is already fed by "
                                   f"flows[{fed[flow.to, target_input]}]",
                                   ("flows", i))
            fed[flow.to, target_input] = i
    for name, node in app.models.items():
        if node.python and node.inputs:
            for inp in node.inputs:
                if (name, inp) not in fed and any(f.to == name for f in app.flows):
                    raise loaded.error(f"input '{inp}' of '{name}' is fed by no flow", ("models", name, "inputs", inp))


def check_app(loaded: LoadedApp) -> dict[str, ResolvedSite]:
    """The checks that need only the app: names, sites (their targets resolved, and returned),
    links, models, endpoints, flows. The checks on the graph the flows make come after
    (planner.model.graph_checks)."""
    check_names(loaded)
    sites = resolve_sites(loaded)
    check_links(loaded)
    check_models(loaded)
    check_endpoints(loaded)
    check_flows(loaded)
    return sites
