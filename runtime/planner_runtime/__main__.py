"""`python -m planner_runtime serve BUNDLE_DIR [--port P] [--host H] [--host-targets] [--metrics-port M]
[--port-file F] [--peers-file F]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from planner_runtime.gc_freeze import freeze_loaded
from planner_runtime.malloc import tune_malloc


def main(argv: list[str] | None = None) -> int:
    launcher = os.getppid()  # who started this process: the one to write --peers-file
    parser = argparse.ArgumentParser(prog="python -m planner_runtime", description="serve a site bundle over gRPC (KServe v2)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve OUT/sites/<site>")
    serve.add_argument("bundle_dir")
    serve.add_argument("--port", type=int, default=None, help="default: the port of this site's address in bundle.yaml; "
                       "0: a free port the OS picks (see --port-file)")
    serve.add_argument("--host", default="0.0.0.0", help="interface to listen on (default all)")
    serve.add_argument("--host-targets", action="store_true",
                       help="run the artifacts compiled for this machine (host_fallback) instead of the site's own")
    serve.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this HTTP port (0: any)")
    serve.add_argument("--port-file", default=None, metavar="PATH",
                       help="once listening, write the ports it listens on here ({\"pid\": ..., \"port\": P, \"metrics_port\": M})")
    serve.add_argument("--peers-file", default=None, metavar="PATH",
                       help="before serving, wait for this file ({site: HOST:PORT}, written by whoever started the "
                       "sites on port 0 once all have reported their ports) and reach the sites there")
    serve.add_argument("--max-inflight", type=int, default=None, metavar="N",
                       help="requests entering the ensemble here that run at once (default: bundle.yaml's "
                            "runtime.max_inflight, 32)")
    serve.add_argument("--max-queue", type=int, default=None, metavar="M",
                       help="requests waiting for a slot, first come first served, until their deadline; beyond "
                            "them RESOURCE_EXHAUSTED at once (default: bundle.yaml's runtime.max_queue, 64)")
    serve.add_argument("--workers", type=int, default=32,
                       help="gRPC handler threads besides those of running and queued requests (deliveries from "
                            "other sites, single models)")
    serve.add_argument("--no-malloc-tuning", action="store_true",
                       help="leave glibc malloc's defaults (large buffers from fresh mmaps, faulted in per request)")
    serve.add_argument("--peer", action="append", default=[], metavar="SITE=HOST:PORT[,HOST:PORT...]",
                       help="reach a site at this address instead of bundle.yaml's; a site run as several replicas: "
                            "one address each, comma-separated or the option repeated")
    serve.add_argument("--exit-with-launcher", action="store_true",
                       help="stop when the process that started this one exits, even if killed outright (planner up)")
    serve.add_argument("--advertise", default=None, metavar="HOST:PORT",
                       help="this site's address as other sites reach it (sink tensors of requests entering "
                            "here come back to it); default: bundle.yaml's address with --port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.no_malloc_tuning:
        tune_malloc()

    from planner_runtime.bundle_format import Bundle
    from planner_runtime.handshake import HandshakeError, await_peers, report_ports
    from planner_runtime.nodes import ArtifactError
    from planner_runtime.server import SiteServer

    try:
        peers = parse_peers(args.peer)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        server = SiteServer(args.bundle_dir, port=args.port, host=args.host, host_targets=args.host_targets,
                            metrics_port=args.metrics_port, workers=args.workers, peers=peers,
                            advertise=args.advertise, max_inflight=args.max_inflight,
                            max_queue=args.max_queue)
        # the bundle and the imports are loaded: no full collection walks them again, and the
        # collection before the freeze runs before any request can meet it
        freeze_loaded()
        server.start(serving=args.peers_file is None)
    except (ArtifactError, OSError, ValueError) as exc:  # BundleError included: it names bundle.yaml
        print(f"error: {exc}", file=sys.stderr)
        return 2
    b: Bundle = server.bundle
    note = " (host-targets: models compiled for this machine, not the site's hardware)" if args.host_targets else ""
    metrics = f", metrics on :{server.metrics_port}" if server.metrics_port else ""
    print(f"site {b.site} of {b.app} listening on {args.host}:{server.port}{metrics}: "
          f"models {', '.join(server.models())}{note}", flush=True)
    if args.port_file:
        report_ports(args.port_file, server.port, server.metrics_port)
    if args.peers_file:
        try:
            server.set_peers(await_peers(args.peers_file, launcher))
        except (HandshakeError, ValueError, OSError) as exc:
            print(f"error: {args.peers_file}: {exc}", file=sys.stderr)
            server.stop(grace=0)
            return 2
        server.set_serving()
    done = threading.Event()

    def stop(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_with_launcher:
        threading.Thread(target=_watch_launcher, args=(launcher, done), name="launcher", daemon=True).start()
    done.wait()
    server.stop(grace=1.0)
    return 0


def parse_peers(items: list[str]) -> dict[str, list[str]]:
    """`--peer` options: {site: [address of each replica]}, in the order given (repeated or comma-separated)."""
    peers: dict[str, list[str]] = {}
    for item in items:
        name, sep, addresses = item.partition("=")
        split = addresses.split(",")
        if not sep or not name or not all(":" in a for a in split):
            raise ValueError(f"--peer {item!r}: expected SITE=HOST:PORT or SITE=HOST:PORT,HOST:PORT,...")
        known = peers.setdefault(name, [])
        known.extend(a for a in split if a not in known)
    return peers


def _watch_launcher(launcher: int, done: threading.Event) -> None:
    """A launcher killed outright (SIGKILL: it cannot stop its sites) must not leave its sites
    serving with nobody to stop them: this process is re-parented, and it stops."""
    while not done.wait(0.5):
        if os.getppid() != launcher:
            print(f"stopping: the process that started this site ({launcher}) has exited", file=sys.stderr, flush=True)
            done.set()


if __name__ == "__main__":
    raise SystemExit(main())
