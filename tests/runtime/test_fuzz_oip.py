"""The OIP request decoder under fuzzing: mutated ModelInfer requests against a real site on loopback.

Hypothesis (derandomized: the same examples on every run) mutates a valid request of the guard app
(tests.runtime.sitehost): model names, tensor names, datatypes, shapes (negative, huge, wrong
rank), raw or typed contents of right and wrong sizes, raw tensor counts, parameters (`entry`,
`flow`, `cancel`, ...), request ids and requested outputs. The site, `python -m planner_runtime
serve --port 0` holding every node of the app, must answer each with a documented status:
OK, INVALID_ARGUMENT, NOT_FOUND or RESOURCE_EXHAUSTED; the internal `__planner_deliver__`
may also answer PERMISSION_DENIED (an entry outside the ensemble) or CANCELLED (a request id
cancelled before). It must stay up, log no traceback, and its resident memory must grow by less
than RSS_BOUND over the run.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb

from tests.runtime import sitehost
from tests.runtime.sitehost import guard_inputs, infer_request, infer_stub, output

pytestmark = pytest.mark.timeout(300)
DELIVER = "__planner_deliver__"
EXAMPLES = 300
RSS_BOUND = 24 << 20  # bytes the site's RSS may grow by over the fuzz run (after a warm-up)
PUBLIC_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.RESOURCE_EXHAUSTED}
DELIVER_CODES = PUBLIC_CODES | {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.CANCELLED}

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES", "BF16", "", "fp32"]
ITEMSIZE = {"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
            "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8}
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}
VALUES = {"bool_contents": st.booleans(), "int_contents": st.integers(-2**31, 2**31 - 1),
          "int64_contents": st.integers(-2**63, 2**63 - 1), "uint_contents": st.integers(0, 2**32 - 1),
          "uint64_contents": st.integers(0, 2**64 - 1), "fp32_contents": st.floats(width=32),
          "fp64_contents": st.floats(), "bytes_contents": st.binary(max_size=6)}
VALID = {"x": ("FP32", [1, 64]), "tags": ("BYTES", [2]), "w": ("INT8", [1, 2])}
FLOWS = ["source:cam.x->node:hold.x", "source:cam.tags->node:count.tags", "source:cam.w->node:count.w",
         "node:hold.y->sink:screen.y", "node:count.n->sink:screen.n", "", "source:cam.x->node:nope.x"]

dims = st.one_of(st.integers(-3, 66), st.sampled_from([2**31, 2**32 + 1, 2**62, 2**62 + 12, 2**63 - 1, -2**63]))
text = st.text(max_size=12)


def _count(shape: list[int]) -> int | None:
    """Elements of a shape, when it is one a small request can fill."""
    if any(d < 0 for d in shape):
        return None
    n = math.prod(shape)
    return n if n <= 256 else None


BASE = {"guard": ["x", "tags", "w"], "count": ["tags", "w"], "hold": ["x"], DELIVER: ["tags", "w"]}
FLOW_OF = {"x": FLOWS[0], "tags": FLOWS[1], "w": FLOWS[2]}
MUTATIONS = ["model", "name", "datatype", "shape", "drop", "duplicate", "extra", "size", "typed", "raw count",
             "parameter", "flow", "id", "outputs"]


def _valid_raw(draw, datatype: str, count: int) -> bytes:
    if datatype == "BYTES":
        return b"".join(len(b).to_bytes(4, "little") + b for b in (draw(st.binary(max_size=4)) for _ in range(count)))
    n = count * ITEMSIZE.get(datatype, 1)
    return draw(st.binary(min_size=n, max_size=n))


@st.composite
def requests(draw):
    """A valid request of the guard app (or a delivery to it), then up to 3 mutations."""
    model = draw(st.sampled_from(sorted(BASE)))
    tensors = [{"name": n, "datatype": VALID[n][0], "shape": list(VALID[n][1]), "size": 0,
                "flow": FLOW_OF[n] if model == DELIVER else None} for n in BASE[model]]
    params = {"entry": "ENTRY"} if model == DELIVER else {}
    typed, raw_extra, rid, outputs = False, 0, "r-" + draw(st.text("0123456789abcdef", max_size=8)), []
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        i = draw(st.integers(0, max(0, len(tensors) - 1)))
        if mutation == "model":
            model = draw(st.one_of(st.sampled_from(sorted(BASE)), text))
        elif mutation == "extra" or not tensors:
            tensors.append({"name": draw(st.one_of(st.sampled_from(["x", "tags", "w", "y"]), text)),
                            "datatype": draw(st.sampled_from(DATATYPES)), "shape": draw(st.lists(dims, max_size=3)),
                            "size": 0, "flow": None})
        elif mutation == "name":
            tensors[i]["name"] = draw(st.one_of(st.sampled_from(["x", "tags", "w", "y", "n"]), text))
        elif mutation == "datatype":
            tensors[i]["datatype"] = draw(st.sampled_from(DATATYPES))
        elif mutation == "shape":
            tensors[i]["shape"] = draw(st.lists(dims, max_size=4))
        elif mutation == "drop":
            del tensors[i]
        elif mutation == "duplicate":
            tensors.append(dict(tensors[i]))
        elif mutation == "size":
            tensors[i]["size"] = draw(st.sampled_from([-1, 1, 7, -4]))
        elif mutation == "typed":
            typed = True
        elif mutation == "raw count":
            raw_extra = draw(st.sampled_from([-1, 1]))
        elif mutation == "parameter":
            key = draw(st.one_of(st.sampled_from(["entry", "cancel", "from_site", "deadline_unix_ns"]), text))
            params[key] = draw(st.one_of(st.just("ENTRY"), text, st.booleans(), st.integers(-2**63, 2**63 - 1)))
        elif mutation == "flow":
            tensors[i]["flow"] = draw(st.one_of(st.sampled_from(FLOWS), text))
        elif mutation == "id":
            rid = draw(st.one_of(st.just(""), st.text(max_size=200)))
        elif mutation == "outputs":
            outputs = draw(st.lists(st.one_of(st.sampled_from(["y", "n"]), text), max_size=2))
    req = pb.ModelInferRequest(model_name=model, id=rid)
    raws = []
    for t in tensors:
        wire = req.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        if t["flow"] is not None:
            wire.parameters["flow"].string_param = t["flow"]
        count = _count(t["shape"])
        if typed:
            field = CONTENTS.get(t["datatype"]) or draw(st.sampled_from(sorted(VALUES)))
            n = max(0, (count if count is not None else draw(st.integers(0, 8))) + t["size"])
            getattr(wire.contents, field).extend(draw(st.lists(VALUES[field], min_size=n, max_size=n)))
        else:
            raw = _valid_raw(draw, t["datatype"], count) if count is not None else draw(st.binary(max_size=64))
            raws.append(raw[:len(raw) + t["size"]] if t["size"] < 0 else raw + b"\1" * t["size"])
    if not typed:
        req.raw_input_contents.extend(raws[:-1] if raw_extra < 0 else raws + [b"\0"] * raw_extra)
    for key, value in params.items():
        if isinstance(value, bool):
            req.parameters[key].bool_param = value
        elif isinstance(value, int):
            req.parameters[key].int64_param = value
        else:
            req.parameters[key].string_param = value
    for name in outputs:
        req.outputs.add(name=name)
    return req


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`python -m planner_runtime serve` on a port the system picks, every node of the guard app at one site."""
    out = sitehost.write_app(tmp_path_factory.mktemp("fuzz"), far="entry", deadline_ms=2000, hold_instances=1)
    log = out / "site.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "planner_runtime", "serve", str(out / "sites" / "entry"),
                                 "--host", "127.0.0.1", "--port", "0"], stdout=subprocess.PIPE, stderr=err,
                                cwd=sitehost.ROOT)
    line = proc.stdout.readline().decode()
    match = re.search(r"listening on (\S+:\d+)", line)
    if match is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the site did not start: {line!r}\n{log.read_text()[-3000:]}")
    try:
        yield {"address": match.group(1), "proc": proc, "log": log}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_mutated_requests_get_documented_statuses_and_bounded_memory(site):
    channel = grpc.insecure_channel(site["address"])
    call = infer_stub(channel)
    for k in range(200):  # warm-up: the buffers and caches a serving site keeps anyway
        call(infer_request("guard", guard_inputs(k)), timeout=30)
    rss_before = _rss(site["proc"].pid)
    seen: dict[str, int] = {}

    @settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(requests())
    def one(req):
        for key in req.parameters:
            if req.parameters[key].string_param == "ENTRY":
                req.parameters[key].string_param = site["address"]  # the site's own address: an entry it accepts
        try:
            call(req, timeout=30)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
        allowed = DELIVER_CODES if req.model_name == DELIVER else PUBLIC_CODES
        assert code in allowed, (code, details, req)
        seen[code.name] = seen.get(code.name, 0) + 1

    one()
    # it stays up, answers right, and holds no memory for what it refused
    resp = call(infer_request("guard", guard_inputs(5)), timeout=30)
    np.testing.assert_array_equal(output(resp, "y"), guard_inputs(5)["x"])
    growth = _rss(site["proc"].pid) - rss_before
    channel.close()
    assert site["proc"].poll() is None
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB over {EXAMPLES} requests ({seen})"
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND"} <= set(seen), seen  # the fuzz reaches past the decoder
    log = site["log"].read_text()
    assert "Traceback" not in log, log[-3000:]
