"""OUT/sites/<site>/ (bundle.yaml and the artifacts of the models placed there: each ONNX model's
build the plan chose, planner.bundle.builds) and OUT/deploy/ (Kubernetes, Compose), for a solved plan."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from planner.app.targets import Target, get_target
from planner.bundle import manifests
from planner.bundle.builds import chosen_build, ort_node
from planner.bundle.wiring import wire
from planner.model.checked_app import CheckedApp
from planner.plan.schema import Plan
from planner.profiling.app_profiles import AppProfiles
from planner.profiling.artifacts import copy_library
from planner.profiling.flows import flow_bytes
from planner_runtime.bundle_format import Bundle, NodeSpec, RuntimeSettings, SiteEndpoint

BASE_PORT = 50051  # loopback ports of `planner up`, in the order of app.yaml's sites
MiB = 1 << 20


def bundle_sites(checked: CheckedApp, plan: Plan) -> list[str]:
    """Sites that run something: a model, or a source's entry point."""
    used = set(plan.placement.values()) | {s.site for s in checked.app.sources.values()}
    return [s for s in checked.app.sites if s in used]


def _settings(checked: CheckedApp, profiles: AppProfiles) -> RuntimeSettings:
    # the largest request a site sends or receives: everything flowing into one node or sink
    into: dict[str, int] = {}
    for i, flow in enumerate(checked.app.flows):
        into[flow.to] = into.get(flow.to, 0) + flow_bytes(checked, profiles.table, i)
    biggest = max(into.values(), default=0)
    slo = checked.app.constraints.latency_ms
    return RuntimeSettings(max_message_bytes=min(2**31 - 1, max(16 * MiB, 2 * biggest + MiB)),
                           default_deadline_ms=max(30000.0, 10 * (slo or 0)))


def _in_bundle(checked: CheckedApp, name: str, rel: str) -> str:
    """Where a file of step `name` goes under the site's `steps/`: its place beside app.yaml, or,
    for a step file outside the app's directory (a shared module), steps/_outside/<node>/<file name>.
    Never the path as written: `..` or an absolute path would land outside the bundle."""
    beside = checked.loaded.beside(rel)
    return f"steps/{beside}" if beside else f"steps/_outside/{name}/{Path(rel).name}"


def _copy_step(checked: CheckedApp, name: str, site_dir: Path) -> tuple[str, str]:
    node = checked.app.models[name]
    file, function = node.python_step
    for rel in [file, *node.files]:  # `files:` are inside the app's directory (app/checks.py)
        dest = site_dir / _in_bundle(checked, name, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checked.resolve(rel), dest)
    return _in_bundle(checked, name, file), function


def _compile(checked: CheckedApp, profiles: AppProfiles, name: str, target: Target, dest: Path,
             stem: str) -> tuple[str, str | None]:
    node = checked.app.models[name]
    path, note = copy_library(checked.resolve(node.onnx), node.input_shapes, target, dest, stem,
                              profiles.executables)
    return str(path.relative_to(dest.parent)), note


def write_bundles(checked: CheckedApp, profiles: AppProfiles, plan: Plan, out: Path, *, host_fallback: bool = True,
                  progress: Callable[[str], None] | None = None) -> list[str]:
    """Write OUT/sites and OUT/deploy into `out` (a staging dir); returns notes for the user."""
    notes: list[str] = []
    say = progress or (lambda msg: None)
    sources, sinks, nodes, flows = wire(checked, profiles.table, plan.placement)
    used = bundle_sites(checked, plan)
    deploys = site_deploys(checked, plan, used)  # their names checked before anything is compiled
    # replicas: what `planner up` starts per site (absent from plan.sites: a site that only receives requests)
    endpoints = {s: SiteEndpoint(address=f"127.0.0.1:{BASE_PORT + i}", tier=checked.sites[s].tier,
                                 target=checked.sites[s].target_name,
                                 replicas=plan.sites[s].replicas if s in plan.sites else 1)
                 for i, s in enumerate(used)}
    settings = _settings(checked, profiles)
    host = get_target("host")
    for site in used:
        site_dir = out / "sites" / site
        (site_dir / "models").mkdir(parents=True, exist_ok=True)
        target = checked.sites[site].target
        local: dict[str, NodeSpec] = {}
        for name, spec in nodes.items():
            if spec.site != site:
                local[name] = spec
                continue
            extra: dict = {}
            if spec.kind == "python":
                extra["artifact"], extra["function"] = _copy_step(checked, name, site_dir)
            elif (build := chosen_build(plan, name)).startswith("onnxruntime/"):
                say(f"writing {name} for ONNX Runtime ({build}) on {site}")
                extra = ort_node(checked, profiles.table, name, site, build, target.is_gpu, site_dir)
            else:
                say(f"compiling {name} for {site} ({target.name})")
                extra["artifact"], note = _compile(checked, profiles, name, target, site_dir / "models", name)
                extra["compiled_for"] = target.name
                profiled = profiles.table.get(name, site, build)
                extra["threads"] = profiled.threads if profiled else None  # the pool it was measured on
                if note:
                    notes.append(f"{site}/{name}: {note}")
                if host_fallback and not target.is_host:
                    say(f"compiling {name} for this host (planner up --host-targets)")
                    extra["host_fallback"], _ = _compile(checked, profiles, name, host, site_dir / "models",
                                                         f"{name}.host")
            local[name] = spec.model_copy(update=extra)
        bundle = Bundle(app=checked.app.name, site=site, sites=endpoints, sources=sources, sinks=sinks,
                        nodes=local, flows=flows, runtime=settings)
        bundle.write(site_dir)
    write_manifests(checked.app.name, deploys, out / "deploy")
    return notes


def site_deploys(checked: CheckedApp, plan: Plan, used: list[str]) -> list[manifests.SiteDeploy]:
    """What the deploy manifests need of each site; an InputError when two sites' names in them clash."""
    entries = {s.site for s in checked.app.sources.values()}
    out = []
    for s in used:
        report = plan.sites.get(s)  # absent for a site that only receives requests
        out.append(manifests.SiteDeploy(
            name=s, tier=checked.sites[s].tier, target=checked.sites[s].target_name,
            replicas=report.replicas if report else 1, memory_mb=report.memory_mb_used if report else 0,
            models=tuple(report.models) if report else (), entry=s in entries))
    clash = manifests.name_clash(checked.app.name, out)
    if clash:
        first, second, name = clash
        what = f"sites '{first}' and '{second}' get" if first else f"site '{second}' gets"
        raise checked.error(f"{what} the same name '{name}' in the deploy manifests{'' if first else ' as the app'} "
                            "(Kubernetes and Compose names: lower case, '-' for other characters); rename one",
                            ("sites", second))
    return out


def write_manifests(app: str, sites: list[manifests.SiteDeploy], deploy: Path) -> None:
    (deploy / "k8s").mkdir(parents=True, exist_ok=True)
    for site in sites:
        (deploy / "k8s" / f"{manifests.dns_name(site.name)}.yaml").write_text(
            manifests.dump_all(manifests.k8s_site(app, site, sites)))
    (deploy / "compose.yaml").write_text(manifests.dump_all([manifests.compose(app, sites, BASE_PORT)]))
