"""Helpers run with PyTriton's interpreter (its tritonclient brings the KServe v2 gRPC stubs):
the commands of ``bench/peer_tools.py`` (body, ready, check) for PyTriton's echo model."""

import struct
import sys
from pathlib import Path

from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from peer_tools import main  # noqa: E402


def request(size: int) -> pb.ModelInferRequest:
    # Triton takes tensor data as raw_input_contents; a BYTES element is a 4-byte length + bytes.
    tensor = pb.ModelInferRequest().InferInputTensor(name="data", datatype="BYTES", shape=[1])
    raw = struct.pack("<I", size) + b"x" * size
    return pb.ModelInferRequest(model_name="echo", inputs=[tensor], raw_input_contents=[raw])


def echoed(reply: pb.ModelInferResponse, size: int) -> bool:
    raw = reply.raw_output_contents[0] if reply.raw_output_contents else b""
    return raw[4:] == b"x" * size


if __name__ == "__main__":
    main(pb, pb_grpc.GRPCInferenceServiceStub, request, echoed, "PyTriton")
