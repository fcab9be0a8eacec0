"""Soak: 20,000 requests through a 3-site ensemble served by `planner up`, with one site killed
(SIGKILL) and started again by `planner up --restarts 2` twice during the run.

    .venv/bin/python benchmarks/soak.py                     # ~5 min on 2 cores
    .venv/bin/python benchmarks/soak.py --requests 2000 --out /tmp/soak   # a short run

The ensemble is the runtime tests' fan app (tests/runtime/fanapp.py: edge -> mec and cloud ->
cloud, TVM-compiled for this host, a python step at mec; x [1, 64] in, three sink tensors out).
Closed loop: `--clients` threads, each sending one request after the other (one call each,
no retries) with a 10 s gRPC deadline, on the runtime's own OIP client; a client that gets an
error waits 0.1 s before its next request (as a client backing off would), so a dead site
costs a few hundred errors, not thousands. The mec site (its models and python step, in the
middle of both paths) is killed when a third and two thirds of the requests are done.

Every answer is checked against the same ensemble run in this process by ONNX Runtime
(`fanapp.reference`; 256 distinct inputs, cycled): `out` and `p` within 1e-4, `label` equal.
Recorded (benchmarks/results/soak.{json,md}):
- ok, wrong (an answer that differs), lost (a call that never returned), hangs (a call that
  returned more than 2 s after its deadline), errors by gRPC code, and whether every code
  is one the README documents for a site that is down (UNAVAILABLE, DEADLINE_EXCEEDED);
- latency of ok answers (p50, p99, max), overall and outside the 10 s after each kill;
- each site's peak RSS (VmHWM of every process that served it) and its RSS after the warm-up
  and at the end (sites never killed: their growth over the run);
- after each kill: when mec served again (its new pid in OUT/logs/mec.ports.json), when the first
  answer came back ok, and the errors meanwhile;
- tracebacks in the site logs, and `planner up`'s exit after Ctrl-C at the end.
Goal: 0 wrong, 0 lost, 0 hangs, every error UNAVAILABLE or DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEADLINE_S = 10.0
KILLED = "mec"
SITE_DOWN_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}  # README, Runtime: what a client sees while a site is down
DOCUMENTED = SITE_DOWN_CODES | {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "INTERNAL"}


def reserve_ports(n: int) -> tuple[int, list[socket.socket]]:
    """P..P+n-1 held by sockets bound without listening, with SO_REUSEADDR: the sites (gRPC binds
    with SO_REUSEADDR) may take them, nothing else can while they are held."""
    for _ in range(100):
        held = []
        try:
            for i in range(n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                held.append(s)
                s.bind(("127.0.0.1", held[0].getsockname()[1] + i if i else 0))
            return held[0].getsockname()[1], held
        except OSError:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def ready_pid(out: Path, site: str) -> int | None:
    try:
        return json.loads((out / "logs" / f"{site}.ports.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def memory_kb(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in ("VmHWM", "VmRSS")}


class Sampler(threading.Thread):
    """Every 0.25 s: each site's current process (pid from its ready file), its VmHWM and VmRSS."""

    def __init__(self, out: Path, sites: list[str]):
        super().__init__(daemon=True)
        self.out, self.sites = out, sites
        self.peak: dict[str, dict[int, int]] = {s: {} for s in sites}  # site -> pid -> VmHWM kB
        self.rss: dict[str, int] = {}
        self.stop = threading.Event()

    def sample(self) -> None:
        for site in self.sites:
            pid = ready_pid(self.out, site)
            mem = memory_kb(pid) if pid else {}
            if mem:
                self.peak[site][pid] = max(self.peak[site].get(pid, 0), mem["VmHWM"])
                self.rss[site] = mem["VmRSS"]

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.sample()


def start_up(out: Path, base: int) -> tuple[subprocess.Popen, list[str]]:
    up = subprocess.Popen([sys.executable, "-m", "planner", "up", str(out), "--no-metrics",
                           "--base-port", str(base), "--restarts", "2", "--ready-timeout", "300"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200"})
    said: list[str] = []
    for line in up.stdout:
        said.append(line.rstrip())
        if line.startswith("ready:"):
            break
    else:
        raise RuntimeError("planner up did not start:\n" + "\n".join(said))
    threading.Thread(target=lambda: said.extend(line.rstrip() for line in up.stdout), daemon=True).start()
    return up, said


def reference_answers(onnx_paths: dict[str, Path], work: Path, n: int) -> tuple[list, list]:
    from tests.runtime import fanapp

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(n)]
    ref = fanapp.reference(onnx_paths, work / "ref")
    return xs, [ref.run({"x": x}) for x in xs]


def same_label(got: np.ndarray, want: np.ndarray, p: np.ndarray) -> bool:
    """`class-<argmax p>`; another class whose p is within 1e-4 of the largest is a tie, not wrong
    (tanh saturates: several p are 1.0 to float32 precision, and TVM and ONNX Runtime round apart)."""
    if list(got.ravel()) == list(want.ravel()):
        return True
    try:
        k = int(got.ravel()[0].decode().removeprefix("class-"))
    except (ValueError, UnicodeDecodeError, IndexError):
        return False
    return 0 <= k < p.size and p.ravel()[k] >= p.max() - 1e-4


def matches(got: dict, want: dict) -> bool:
    return (got["out"].shape == want["out"].shape and got["p"].shape == want["p"].shape
            and np.allclose(got["out"], want["out"], atol=1e-4, rtol=0)
            and np.allclose(got["p"], want["p"], atol=1e-4, rtol=0)
            and same_label(got["label"], want["label"], want["p"]))


def describe(i: int, got: dict, want: dict) -> dict:
    """What differs in a wrong answer (input index, each tensor's largest difference or values)."""
    diff = {"input": i}
    for k in ("out", "p"):
        g = got.get(k)
        diff[k] = (f"shape {None if g is None else g.shape} != {want[k].shape}" if g is None or g.shape != want[k].shape
                   else float(np.abs(g - want[k]).max()))
    diff["label"] = [str(got.get("label")), str(want["label"])]
    return diff


def drive(address: str, out: Path, total: int, clients: int, xs: list, want: list, kills: list[dict] | None) -> dict:
    """`total` requests from `clients` threads; with `kills` (a list to fill), mec is killed at a third
    and two thirds of them."""
    import grpc

    from planner_runtime.client import OipClient

    lock = threading.Lock()
    state = {"next": 0, "done": 0, "in_flight": {}}
    records: list[tuple[float, float, str]] = []  # (start, seconds, outcome: ok / wrong / gRPC code)
    kill_at = [total // 3, 2 * total // 3] if kills is not None else []

    def take() -> int | None:
        with lock:
            if state["next"] >= total:
                return None
            state["next"] += 1
            return state["next"] - 1

    def client(k: int) -> None:
        c = OipClient(address)
        while (i := take()) is not None:
            t0 = time.monotonic()
            with lock:
                state["in_flight"][i] = t0
            try:
                got, _ = c.infer("fanapp", {"x": xs[i % len(xs)]}, timeout=DEADLINE_S)
                outcome = "ok" if matches(got, want[i % len(xs)]) else "wrong"
                if outcome == "wrong":
                    with lock:
                        state.setdefault("wrong", []).append(describe(i % len(xs), got, want[i % len(xs)]))
            except grpc.RpcError as exc:
                outcome = exc.code().name
            t1 = time.monotonic()
            with lock:
                del state["in_flight"][i]
                records.append((t0, t1 - t0, outcome))
                state["done"] += 1
            if outcome != "ok":
                time.sleep(0.1)
        c.close()

    def killer() -> None:
        for at in kill_at:
            while state["done"] < at and state["next"] < total:
                time.sleep(0.05)
            pid = ready_pid(out, KILLED)
            t = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            kill = {"after_requests": state["done"], "pid": pid, "t": t}
            while (new := ready_pid(out, KILLED)) in (None, pid):
                time.sleep(0.05)
            kill.update(new_pid=new, serving_again_s=round(time.monotonic() - t, 2))
            kills.append(kill)

    t_start = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,), name=f"client-{k}") for k in range(clients)]
    threads.append(threading.Thread(target=killer, name="killer"))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(60.0, total / 20))  # a client stuck in a call beyond its deadline shows as lost
    wall = time.monotonic() - t_start
    with lock:
        lost = len(state["in_flight"]) + (total - state["next"])
    return {"records": list(records), "lost": lost, "wrong_answers": state.get("wrong", [])[:10], "wall_s": wall, "t_start": t_start}


def summarize(run: dict, kills: list[dict]) -> dict:
    records = run["records"]
    counts = Counter(outcome for _, _, outcome in records)
    errors = {code: n for code, n in counts.items() if code not in ("ok", "wrong")}
    ok_ms = np.array([s * 1000 for _, s, o in records if o == "ok"])
    calm = np.array([s * 1000 for t, s, o in records if o == "ok"
                     and not any(k["t"] <= t < k["t"] + 10 for k in kills)])

    def pct(values: np.ndarray) -> dict:
        if not len(values):
            return {}
        return {"n": int(len(values)), "p50": round(float(np.percentile(values, 50)), 2),
                "p99": round(float(np.percentile(values, 99)), 2), "max": round(float(values.max()), 2)}

    for k in kills:
        after = sorted((t, o) for t, _, o in records if t >= k["t"])
        first_ok = next((t for t, o in after if o == "ok"), None)
        k["first_ok_after_s"] = round(first_ok - k["t"], 2) if first_ok else None
        k["errors_until_then"] = sum(1 for t, o in after if o != "ok" and (first_ok is None or t < first_ok))
        k["at_s"] = round(k.pop("t") - run["t_start"], 2)
    return {
        "requests": len(records) + run["lost"], "ok": counts["ok"], "wrong": counts["wrong"], "lost": run["lost"],
        "wrong_answers_first_10": run["wrong_answers"],
        "hangs": sum(1 for _, s, _ in records if s > DEADLINE_S + 2),
        "errors_by_code": dict(sorted(errors.items())),
        "undocumented_codes": sorted(set(errors) - DOCUMENTED),
        "codes_other_than_site_down": sorted(set(errors) - SITE_DOWN_CODES),
        "latency_ms_ok": pct(ok_ms), "latency_ms_ok_outside_kills": pct(calm),
        "throughput_rps": round(len(records) / run["wall_s"], 1), "wall_s": round(run["wall_s"], 1),
        "kills": kills,
    }


def run(args) -> dict:
    from runtime_overhead import machine

    from tests.runtime import fanapp

    t0 = time.monotonic()
    models = Path(tempfile.gettempdir()) / "planner-soak-models"
    onnx_paths, libs = fanapp.cached_models(models)  # compiled once, kept for later runs
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    out = fanapp.write_bundles(work / "out", {s: 1 for s in fanapp.SITES}, libs)  # ports: --base-port
    xs, want = reference_answers(onnx_paths, work, 256)
    sites = sorted(fanapp.SITES)
    base, held = reserve_ports(len(sites))
    up, said = start_up(out, base)  # `held` stays held: nothing else takes mec's port while it is down
    sampler = Sampler(out, sites)
    try:
        address = f"127.0.0.1:{base + sites.index('edge')}"
        sampler.sample()
        sampler.start()
        warm = drive(address, out, 200, args.clients, xs, want, None)  # warm-up: not counted, no kills
        if warm["lost"] or any(o != "ok" for *_, o in warm["records"]):
            raise RuntimeError(f"warm-up failed: {Counter(o for *_, o in warm['records'])} {warm['wrong_answers']}")
        sampler.sample()
        rss_warm = dict(sampler.rss)
        kills: list[dict] = []
        result = summarize(drive(address, out, args.requests, args.clients, xs, want, kills), kills)
        sampler.sample()
        rss_end = dict(sampler.rss)
    finally:
        sampler.stop.set()
        for s in held:
            s.close()
        up.send_signal(signal.SIGINT)
        try:
            up_exit = up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up_exit = "killed after 60 s"
    logs = {s: (out / "logs" / f"{s}.log").read_text(errors="replace") for s in sites}
    result["sites"] = {s: {"peak_rss_mb": round(max(sampler.peak[s].values()) / 1024, 1),
                           "processes": len(sampler.peak[s]),
                           "rss_after_warmup_mb": round(rss_warm.get(s, 0) / 1024, 1),
                           "rss_at_end_mb": round(rss_end.get(s, 0) / 1024, 1),
                           "tracebacks_in_log": logs[s].count("Traceback")} for s in sites}
    result["planner_up"] = {"exit_after_ctrl_c": up_exit,
                            "restart_messages": [line for line in said if "starting it again" in line]}
    result["goal"] = "0 wrong, 0 lost, 0 hangs, every error UNAVAILABLE or DEADLINE_EXCEEDED (a site down)"
    result["goal_met"] = (result["wrong"] == 0 and result["lost"] == 0 and result["hangs"] == 0
                          and not result["codes_other_than_site_down"] and len(result["kills"]) == 2)
    result["setup"] = {"app": "tests/runtime/fanapp.py (3 sites, TVM for this host, one python step)",
                       "served_by": "planner up --no-metrics --base-port P --restarts 2",
                       "clients": args.clients, "deadline_s": DEADLINE_S, "killed_site": KILLED,
                       "distinct_inputs": len(xs), "warmup_requests": 200}
    result["machine"] = {**machine(), "note": args.note, "loadavg_end": list(os.getloadavg()),
                         "benchmark_wall_s": round(time.monotonic() - t0, 1)}
    return result


def markdown(r: dict) -> str:
    m, s = r["machine"], r["setup"]
    lines = [
        "# Soak: a 3-site ensemble under `planner up`, one site killed twice", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, grpcio {m['grpcio']}; "
        f"{m['date_utc']} UTC. {m.get('note') or 'No other jobs noted'} (load average {m['loadavg_start'][0]:.1f} "
        f"at the start, {m['loadavg_end'][0]:.1f} at the end). The whole benchmark took {m['benchmark_wall_s']} s.", "",
        f"{r['requests']} requests, {s['clients']} closed-loop clients, {s['deadline_s']:g} s deadline, "
        f"served by `{s['served_by']}`; site `{s['killed_site']}` killed (SIGKILL) twice. "
        f"Goal: {r['goal']}: **{'met' if r['goal_met'] else 'not met'}**.", "",
        "| ok | wrong | lost | hangs | errors by code | throughput |", "|---:|---:|---:|---:|---|---:|",
        f"| {r['ok']} | {r['wrong']} | {r['lost']} | {r['hangs']} | "
        f"{', '.join(f'{c} {n}' for c, n in r['errors_by_code'].items()) or 'none'} | {r['throughput_rps']} rps |", "",
        "| latency of ok answers (ms) | n | p50 | p99 | max |", "|---|---:|---:|---:|---:|",
    ]
    for label, key in (("all", "latency_ms_ok"), ("outside the 10 s after each kill", "latency_ms_ok_outside_kills")):
        q = r[key]
        lines.append(f"| {label} | {q.get('n')} | {q.get('p50')} | {q.get('p99')} | {q.get('max')} |")
    lines += ["", "| kill | after requests | serving again after | first ok answer after | errors meanwhile |",
              "|---:|---:|---:|---:|---:|"]
    for i, k in enumerate(r["kills"], 1):
        lines.append(f"| {i} (at {k['at_s']} s) | {k['after_requests']} | {k['serving_again_s']} s | "
                     f"{k['first_ok_after_s']} s | {k['errors_until_then']} |")
    lines += ["", "| site | peak RSS (MB) | processes | RSS after warm-up | RSS at end | tracebacks in log |",
              "|---|---:|---:|---:|---:|---:|"]
    for site, v in r["sites"].items():
        lines.append(f"| {site} | {v['peak_rss_mb']} | {v['processes']} | {v['rss_after_warmup_mb']} | "
                     f"{v['rss_at_end_mb']} | {v['tracebacks_in_log']} |")
    lines += ["", f"`planner up` said: {'; '.join(r['planner_up']['restart_messages'])}; exit after Ctrl-C: "
              f"{r['planner_up']['exit_after_ctrl_c']}.", "",
              "Peak RSS: the largest VmHWM of the site's processes (a killed site has one per start). "
              "Errors: one call per request, no retries; a client waits 0.1 s after an error.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak"), help="output prefix (.json, .md)")
    ap.add_argument("--note", default="", help="the run's conditions, e.g. 'other jobs shared the 2 cores'")
    args = ap.parse_args()
    r = run(args)
    Path(args.out + ".json").write_text(json.dumps(r, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(r))
    print(markdown(r))
    return 0 if r["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
