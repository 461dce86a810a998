"""The commands both peers' helpers answer, for any KServe v2 gRPC server (MLServer, PyTriton),
run with the peer's own interpreter (its venv has the stubs and the protobuf it needs):

    body SIZE PATH     write a pre-framed gRPC ModelInferRequest body for h2load
    ready ADDRESS      wait until the echo model is ready
    check ADDRESS SIZE call ModelInfer once and print the framed reply size
"""

import struct
import sys
import time
from collections.abc import Callable

import grpc


def main(pb, stub_class, request: Callable[[int], object], echoed: Callable[[object, int], bool], peer: str) -> None:
    """``request(size)``: the ModelInferRequest of a ``size``-byte echo; ``echoed(reply, size)``:
    whether the reply holds the payload."""
    command = sys.argv[1]
    if command == "body":
        raw = request(int(sys.argv[2])).SerializeToString()
        with open(sys.argv[3], "wb") as f:
            f.write(b"\x00" + struct.pack(">I", len(raw)) + raw)
        return
    channel = grpc.insecure_channel(
        sys.argv[2], options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    )
    stub = stub_class(channel)
    if command == "ready":
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name="echo"), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        sys.exit(f"{peer} echo model not ready")
    if command == "check":
        size = int(sys.argv[3])
        reply = stub.ModelInfer(request(size), timeout=30)
        if not echoed(reply, size):
            sys.exit(f"{peer} echo reply does not hold the payload: {reply.outputs}")
        print(len(reply.SerializeToString()) + 5)
