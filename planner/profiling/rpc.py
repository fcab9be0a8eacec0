"""Measure a compiled model on a device reached through TVM's RPC tracker.

The library is exported for the device's CPU arch (export_artifact), uploaded, loaded there
and timed with the VM's time_evaluator on the device (median over repeats). The device runs
`python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import numpy as np

from planner.profiling.export import export_artifact
from planner.profiling.measure import REPEAT, Timing, time_vm
from planner.app.targets import Target

SESSION_TIMEOUT_S = 600


class RpcUnavailable(Exception):
    """The tracker, the key or the device could not be used."""


def measure_rpc(ex, target: Target, tracker: str, key: str, inputs: list[np.ndarray],
                repeat: int = REPEAT, timeout_s: float = 30) -> Timing:
    return measure_remote(connect(tracker, key), ex, target, inputs, repeat)


def connect(tracker: str, key: str):
    """A session on a device registered with the tracker under `key` (RpcUnavailable if none)."""
    from tvm import rpc

    host, _, port = tracker.rpartition(":")
    try:
        # fail fast: TVM's client retries an unreachable tracker for a minute, and a request for
        # a key no server has registered waits forever
        with socket.create_connection((host, int(port)), timeout=5):
            pass
        tr = rpc.connect_tracker(host, int(port))
        keys = {k.split(":")[0] for k in _registered(tr.summary())}
        if key not in keys:
            raise RpcUnavailable(f"RPC tracker {tracker}: no device registered with key {key!r} "
                                 f"(registered: {', '.join(sorted(keys)) or 'none'})")
        return tr.request(key, priority=1, session_timeout=SESSION_TIMEOUT_S, max_retry=3)
    except RpcUnavailable:
        raise
    except Exception as exc:
        raise RpcUnavailable(f"RPC tracker {tracker}, key {key!r}: {type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}") from None


def measure_remote(remote, ex, target: Target, inputs: list[np.ndarray], repeat: int = REPEAT,
                   stem: str = "model") -> Timing:
    """Upload the library to the device of an open session and time it there. Libraries uploaded
    in one session need distinct `stem`s: overwriting a loaded library crashes the server."""
    from tvm import relax

    with tempfile.TemporaryDirectory() as tmp:
        path, note = export_artifact(ex, target, Path(tmp), stem)
        if path.suffix != ".so":
            raise RpcUnavailable(note or f"cannot link a library for {target.cpu_arch}")
        remote.upload(str(path))
        rlib = remote.load_module(path.name)
    dev = remote.cuda() if target.is_gpu else remote.cpu()
    import tvm

    vm = relax.VirtualMachine(rlib, dev)
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    return time_vm(vm, dev, args, repeat=repeat)


def remote_threads(remote) -> int | None:
    """The thread count of the device's TVM runtime (None when it does not say)."""
    try:
        return int(remote.get_function("runtime.NumThreads")())
    except Exception:  # an older runtime without the function
        return None


def _registered(summary: dict) -> list[str]:
    """Keys the tracker knows: servers' `key` fields and the queue's names."""
    keys = [str(s.get("key", "")) for s in summary.get("server_info", [])]
    keys += list(summary.get("queue_info", {}))
    return [k for k in keys if k]
