"""planner bench: time requests through the running ensemble (planner.local.bench; with --rate the
open loop of planner.local.open_loop), beside the plan's prediction and the same placement
predicted for this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import OutArg, err, out, user_errors
from planner.errors import InputError
from planner.local.served import DEFAULT_REQUESTS


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


@user_errors
def bench(
    out_dir: OutArg,
    n: Annotated[Optional[int], typer.Option("-n", "--requests", min=1, show_default="100",
                                             help="requests to time, one after another")] = None,
    every: Annotated[Optional[float], typer.Option("--every", min=0, show_default="0", help="without --rate: send "
                                                   "each request this many seconds after the last one left (or "
                                                   "once it answered, where that is later): a sporadic load's "
                                                   "latency, whose idle cores wake for each request")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="open loop instead: requests per second, each "
                                                  "sent on schedule whether or not earlier ones answered")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", show_default="10",
                                                      help="with --rate: seconds of sending")] = None,
    arrivals: Annotated[Optional[str], typer.Option("--arrivals", show_default="poisson", help="with --rate: "
                                                    "poisson (exponential gaps) or uniform (every 1/rate s)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", show_default="0",
                                                help="with --rate: the seed of the Poisson schedule")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="requests sent first and not timed")] = 3,
    timeout: Annotated[float, typer.Option(help="deadline of each request, seconds (past it: an error)")] = 30.0,
    entry: Annotated[Optional[str], typer.Option(help="entry address (default: where `planner up OUT` serves the "
                                                 "entry site, else bundle.yaml's)")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option("--input", help="SOURCE=FILE (.npy or image) instead of "
                                                        "random tensors; repeatable")] = None,
    predict: Annotated[bool, typer.Option("--predict/--no-predict", help="predict the same placement on this "
                                          "machine (host profiles, loopback links)")] = True,
    app_file: Annotated[Optional[Path], typer.Option("--app", help="the app.yaml to predict from "
                                                     "[default: the one plan.json was solved from]")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="measure the host profiles again (not from the "
                                          "cache) before the requests")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="seconds to wait for every site to be serving")] = 60.0,
    served: Annotated[Optional[int], typer.Option("--served-pass", min=0, show_default=str(DEFAULT_REQUESTS),
                                                  help="with --rate: requests sent one at a time before the load "
                                                  "(one every 1/rate s) to time each model, hop and the client as "
                                                  "served here; the load is predicted from them (0: from the host "
                                                  "profiles alone)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Time N requests through the running ensemble (`planner up OUT`): p50/p95/p99, per model and per hop,
    beside the plan's prediction and the same placement predicted for this machine. With --rate, an
    open-loop load test instead: exit code 1 when any request failed or passed its deadline."""
    from planner.local.load_test import schedule

    if rate is None:
        stray = [o for o, v in (("--duration", duration), ("--arrivals", arrivals), ("--seed", seed),
                                ("--served-pass", served)) if v is not None]
        if stray:
            raise InputError(f"{', '.join(stray)} set(s) the open loop's schedule: give --rate too")
    else:
        if n is not None or every is not None:
            raise InputError(f"{'-n' if n is not None else '--every'} and --rate are two modes (N requests one after "
                             "another, or an open loop at a rate): give one")
        duration = 10.0 if duration is None else duration
        arrivals = "poisson" if arrivals is None else arrivals
        seed = 0 if seed is None else seed
        served = DEFAULT_REQUESTS if served is None else served
        schedule(rate, duration, arrivals)  # its options checked before anything is measured
    if not timeout > 0:
        raise InputError(f"--timeout must be > 0 seconds, got {timeout:g}")
    from planner.local.bench import bench_inputs, run_bench
    from planner.local.prediction import host_prediction
    from planner.local.sites import wait_for_sites

    given = bench_inputs(out_dir, inputs or [])
    host = {"status": "not computed", "why": "--no-predict"}
    if predict:
        if not as_json:
            err.print("predicting the plan's placement on this machine (host profiles, loopback links)",
                      highlight=False)
        host = host_prediction(out_dir, app_file, refresh, rate_rps=rate,
                               schedule_s=None if rate is None else schedule(rate, duration, arrivals, seed))
    if not entry:
        wait_for_sites(out_dir, wait, lambda: err.print("waiting for the sites to serve (`planner up OUT`)",
                                                        highlight=False))
    from planner_runtime.gc_freeze import freeze_loaded

    # this process is the load's client from here: a full collection walking the planner's imports
    # would stall the sender and the answers (the library functions leave a caller's process alone)
    freeze_loaded()
    if rate is not None:
        from planner.local.open_loop import run_load_test

        from planner.local.prediction import host_stages_for, implied_slowdown, served_prediction

        times = schedule(rate, duration, arrivals, seed)
        served = served if host.get("status") == "ok" else 0
        # the profiled stages once, however many served passes are taken
        stages, sinks, _ = host_stages_for(out_dir, rate, Path(host["app"])) if served else ([], [], 0.0)
        report = run_load_test(out_dir, rate, duration, arrivals=arrivals, seed=seed, warmup=warmup,
                               timeout_s=timeout, entry=entry, inputs=given, host=host, served_requests=served,
                               predict_served=lambda s, entry_site: served_prediction(host, stages, sinks, s,
                                                                                      entry_site, times),
                               implied=lambda s, entry_site, p50: implied_slowdown(host, stages, sinks, s, entry_site,
                                                                                   times, p50))
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            show_load(report)
        if report["errors"]:
            raise typer.Exit(1)
        return
    n = n or 100
    report = run_bench(out_dir, n, warmup, timeout, entry, inputs=given, host=host, every_s=every or 0.0)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    show(report, n)


def _weighed(speed: dict) -> str:
    if "weight" not in speed:
        return ""
    lo, hi = speed["interval"]
    if speed.get("moved"):
        return (f", {lo:g}-{hi:g}x one standard deviation either side: so far from the pass's speed that the machine "
                "moved between them; predicted at the pilot's")
    return (f", {lo:g}-{hi:g}x one standard deviation either side; weighed with the pass's speed (the pilot's "
            f"weight {speed['weight']:g}): predicted at {speed['slowdown']:g}x")


def _against(pred: dict, pct: dict) -> str:
    return "  ".join(f"p{q} {_fmt(pred[f'p{q}_ms'])} (measured {pct[f'p{q}']:+g}%)" if pct[f"p{q}"] is not None
                     else f"p{q} {_fmt(pred[f'p{q}_ms'])}" for q in (50, 99))


def show_load(report: dict) -> None:
    entry = report["entry"]
    out.print(f"{report['app']}: open loop, {report['rate_rps']:g} rps offered ({report['arrivals']}) for "
              f"{report['duration_s']:g} s via {entry['site']} ({', '.join(entry['addresses'])})", highlight=False)
    out.print(f"sent {report['sent']}, ok {report['ok']}, errors {report['errors']}; achieved "
              f"{report['achieved_rps']:g} rps over {report['window_s']:g} s", highlight=False)
    for e in report["error_messages"]:
        out.print(f"  - {e['count']} x {e['message']}", highlight=False)
    late = report["sender_late_ms"]
    out.print(f"end-to-end ms (from each request's scheduled time): p50 {_fmt(report['p50_ms'])}  "
              f"p95 {_fmt(report['p95_ms'])}  p99 {_fmt(report['p99_ms'])}", highlight=False)
    out.print(f"the sender's lateness behind its schedule, ms: p99 {_fmt(late['p99'])}  max {_fmt(late['max'])}",
              highlight=False)
    if (late["p99"] or 0) > max(5.0, 100 / report["rate_rps"]):  # over a tenth of the mean gap
        out.print("  the sender fell behind its schedule: this client, not only the sites, limited the load "
                  "(the latencies still count from the scheduled times)", highlight=False)
    pred, pct = report["predicted"], report["error_pct"]
    if pred["p50_ms"] is None and pred["p99_ms"] is None:
        host = report["host_prediction"]
        why = host.get("why") or ("the model gives no percentiles under load yet" if host.get("status") == "ok"
                                  else host.get("status"))
        out.print(f"predicted on this machine: no prediction at this rate ({why})", highlight=False)
    else:
        out.print(f"predicted on this machine at this rate (simulated over this schedule, from {report['predicted_from']}): "
                  + _against(pred, pct), highlight=False)
        band = report.get("predicted_range")
        if band:
            inside = {q: "inside" if v else "outside" for q, v in band["measured_within"].items() if v is not None}
            out.print(f"  on this machine {100 * band['speed_error']:g} % faster / slower than that: p50 "
                      f"{_fmt(band['p50_ms'][0])}-{_fmt(band['p50_ms'][1])}  p99 {_fmt(band['p99_ms'][0])}-"
                      f"{_fmt(band['p99_ms'][1])}" + (" (measured " + ", ".join(f"{q} {w}" for q, w in inside.items())
                                                      + ")" if inside else ""), highlight=False)
        served = report.get("served_prediction") or {}
        if served.get("served"):
            s = served["served"]
            out.print(f"  the served pass: {s['requests']} requests, one every {s['every_s']:g} s: "
                      + ", ".join(f"{m} {v['ms']:g} ms" for m, v in s["models"].items())
                      + f"; hops {', '.join(f'{h} {ms:g} ms' for h, ms in s['hops'].items()) or 'none'}; "
                      f"the client's share {s['client_ms']:g} ms", highlight=False)
            if served.get("outside_ms"):
                out.print(f"  CPU per request beyond the models, hops and the client's share (the sites' gRPC and "
                          f"python; the machine idle used {_fmt(s.get('idle_cores'))} cores): {served['outside_ms']:g} "
                          "core-ms, simulated after each answer", highlight=False)
            if s.get("pilot_cpu_per_request_ms") is not None:
                out.print(f"  CPU per request one at a time {s['cpu_per_request_ms']:g} core-ms, in the pilot "
                          f"({s['pilot_requests']} requests at the rate) {s['pilot_cpu_per_request_ms']:g}: crowded "
                          f"cores cost {served['contention']:g}x", highlight=False)
        elif served.get("why"):
            out.print(f"  no served pass: {served['why']}", highlight=False)
        if served.get("slower"):
            out.print("  on this machine slower than in the served pass: " + ", ".join(
                f"+{100 * (p['slower'] - 1):.0f} % p50 {_fmt(p['p50_ms'])} p99 {_fmt(p['p99_ms'])}"
                for p in served["slower"]), highlight=False)
        speed, at_pass = served.get("pilot_speed") or {}, report.get("at_pass_speed")
        if speed.get("slowdown") is not None and at_pass:
            out.print(f"  the pilot found the machine {speed.get('read', speed['slowdown']):g}x as slow as the served "
                      f"pass (the pilot's p50 {speed['pilot_p50_ms']:g} ms on its own schedule){_weighed(speed)}; at "
                      "the pass's speed: " + _against(at_pass, at_pass["error_pct"]), highlight=False)
        for note in served.get("notes", []):
            out.print(f"  note: {note}", highlight=False)
        if report["predicted_from"] != "the host profiles":
            out.print("  from the host profiles alone: "
                      + _against(report["predicted_from_profiles"], report["error_pct_from_profiles"]), highlight=False)
    host = report["host_prediction"]
    if host.get("long_run") and host.get("host"):
        long_run, alone = host["long_run"], host.get("independent_queues") or {}
        out.print(f"  in the long run p50 {_fmt(long_run['p50_ms'])}  p99 {_fmt(long_run['p99_ms'])}; this machine's "
                  f"{host['host']['cores']} cores {100 * host['host']['utilization']:.0f}% busy; each model on cores "
                  f"of its own it would be p50 {_fmt(alone.get('p50_ms'))}  p99 {_fmt(alone.get('p99_ms'))}",
                  highlight=False)
    cpu = report.get("cpu_per_request_ms") or {}
    if cpu.get("under_load") is not None:
        out.print("CPU per request, whole machine (core-ms): "
                  + ", ".join(f"{label} {_fmt(cpu.get(key))}" for key, label in (
                      ("modeled", "the prediction's"), ("served_pass", "the served pass"), ("pilot", "its pilot"),
                      ("under_load", "under load"))),
                  highlight=False)
    speed = report.get("machine_speed")
    if speed and speed["moved"]:
        out.print("  note: this machine's speed moved during the bench (a shared host's slow spell): "
                  + "; ".join(speed.get("where") or [f"a fixed compute probe took {speed['before_ms']:g} ms before it "
                                                     f"and {speed['after_ms']:g} ms after the load"])
                  + ": the prediction and the load were not measured on the same machine; run it again",
                  highlight=False)
    check = report.get("at_load_cpu")
    if check:
        out.print(f"  after the fact, the same model with the CPU the load used (crowded cores cost "
                  f"{check['contention']:g}x): " + _against(check, check["error_pct"])
                  + " (near the measurement where the prediction was not: the machine's speed moved, not the model)",
                  highlight=False)
    implied = report.get("implied_slowdown") or {}
    if implied.get("p50") is not None:
        ratio = implied.get("cpu_under_load_over_pass")
        out.print(f"  the measured p50 is the prediction on a machine {implied['p50']:g}x as slow as the served pass "
                  "measured it" + (f"; the load used {ratio:g}x the pass's CPU per request" if ratio else "")
                  + " (near each other: the machine's speed moved, the model held)", highlight=False)
    predicted_util = report["predicted_utilization"] or {}
    t = Table(title="per site: utilization (busy time of its models over the window, per replica)")
    for col in ("site", "measured", "predicted"):
        t.add_column(col, justify="left" if col == "site" else "right")
    for site, u in report["utilization"].items():
        p = predicted_util.get(site)
        t.add_row(site, f"{100 * u:.1f}%", "-" if p is None else f"{100 * p:.1f}%")
    out.print(t)
    queued = any("queue_p50_ms" in m for m in report["models"])
    handed = any("handover_mean_ms" in m for m in report["models"])
    t = Table(title="per model (ms; handover: from an instance's hand-on to a waiting request until it ran, mean)")
    cols = (("model", "site", "service p50", "service p99") + (("queue p50", "queue p99") if queued else ())
            + (("handover",) if handed else ()))
    for col in cols:
        t.add_column(col, justify="left" if col in ("model", "site") else "right")
    for m in report["models"]:
        keys = (("service_p50_ms", "service_p99_ms") + (("queue_p50_ms", "queue_p99_ms") if queued else ())
                + (("handover_mean_ms",) if handed else ()))
        t.add_row(m["model"], m["site"], *(_fmt(m.get(k)) for k in keys))
    out.print(t)


def show(report: dict, n: int) -> None:
    e = report["e2e_ms"]
    host = report["host_prediction"]
    paced = f", one every {report['every_s']:g} s" if report.get("every_s") else ", one after another"
    out.print(f"{report['app']}: {n} requests{paced} via {report['entry']['site']} ({report['entry']['address']})",
              highlight=False)
    out.print(f"end-to-end ms: p50 {e['p50']}  p95 {e['p95']}  p99 {e['p99']}  mean {e['mean']}", highlight=False)
    if report["host_predicted_ms"] is not None:
        out.print(f"predicted on this machine: {report['host_predicted_ms']:g} ms "
                  f"(measured p50 {report['error_pct']:+g}%)", highlight=False)
        for line in host.get("assumptions", []) + host.get("notes", []):
            out.print(f"  - {line}", highlight=False)
    else:
        out.print(f"predicted on this machine: {host.get('status')} ({host.get('why', '')})", highlight=False)
    plan_ms = report["plan_latency_ms"]
    out.print("the plan's prediction (its sites' hardware and links): "
              + (f"{plan_ms:g} ms" if plan_ms is not None else "no OUT/plan.json"), highlight=False)
    t = Table(title="per model (ms)")
    for col in ("model", "site", "p50", "p95", "p99", "this machine", "plan"):
        t.add_column(col, justify="left" if col in ("model", "site") else "right")
    for m in report["models"]:
        t.add_row(m["model"], m["site"], *(_fmt(m[k]) for k in ("p50", "p95", "p99", "host_ms", "plan_ms")))
    out.print(t)
    t = Table(title="per hop (ms: round trip minus the receiver's handling)")
    for col in ("hop", "flows", "bytes", "p50", "p95", "p99", "this machine", "plan"):
        t.add_column(col, justify="left" if col in ("hop", "flows") else "right")
    for h in report["hops"]:
        t.add_row(h["hop"], h["flows"], str(h["bytes"]),
                  *(_fmt(h[k]) for k in ("p50", "p95", "p99", "host_ms", "plan_ms")))
    out.print(t)
