"""Regenerate the Open Inference Protocol stubs: `python runtime/planner_runtime/proto/generate.py`.

Run from anywhere; writes grpc_predict_v2_pb2.py, grpc_predict_v2_pb2.pyi and
grpc_predict_v2_pb2_grpc.py beside the .proto, importable as `planner_runtime.proto.*`
(protoc is run with the distribution's folder, runtime/, as the include root, so the
generated imports are package-qualified). Needs grpcio-tools (a dev dependency), whose protoc
must not be newer than the protobuf runtime pinned in pyproject.toml.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # runtime/: the folder holding the planner_runtime package
PROTO = "planner_runtime/proto/grpc_predict_v2.proto"


def main() -> int:
    from grpc_tools import protoc

    args = ["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={ROOT}", f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}", str(ROOT / PROTO)]
    rc = protoc.main(args)
    if rc != 0:
        print(f"protoc failed ({rc})", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
