"""Helpers run with MLServer's own interpreter (its venv has protobuf < 7): the commands of
``bench/peer_tools.py`` (body, ready, check) for MLServer's echo model."""

import sys
from pathlib import Path

from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from peer_tools import main  # noqa: E402


def request(size: int) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest().InferInputTensor(
        name="data", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"x" * size])
    )
    return pb.ModelInferRequest(model_name="echo", inputs=[tensor])


def echoed(reply: pb.ModelInferResponse, size: int) -> bool:
    """MLServer answers in ``contents`` or, as raw bytes, with or without the 4-byte length."""
    if reply.outputs[0].contents.bytes_contents and reply.outputs[0].contents.bytes_contents[0] == b"x" * size:
        return True
    raw = reply.raw_output_contents[0] if reply.raw_output_contents else b""
    return raw[4:] == b"x" * size or raw == b"x" * size


if __name__ == "__main__":
    main(pb, pb_grpc.GRPCInferenceServiceStub, request, echoed, "MLServer")
