"""Helpers run with MLServer's own interpreter (its venv has protobuf < 7):

tools.py body SIZE PATH     write a pre-framed gRPC ModelInferRequest body for h2load
tools.py ready ADDRESS      wait until the echo model is ready (MLServer opens its port early)
tools.py check ADDRESS SIZE call ModelInfer once and print the framed reply size
"""

import struct
import sys
import time

import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc


def request(size: int) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest().InferInputTensor(
        name="data", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"x" * size])
    )
    return pb.ModelInferRequest(model_name="echo", inputs=[tensor])


def main() -> None:
    command = sys.argv[1]
    if command == "body":
        raw = request(int(sys.argv[2])).SerializeToString()
        with open(sys.argv[3], "wb") as f:
            f.write(b"\x00" + struct.pack(">I", len(raw)) + raw)
        return
    channel = grpc.insecure_channel(
        sys.argv[2], options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    )
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    if command == "ready":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name="echo"), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        sys.exit("MLServer echo model not ready")
    if command == "check":
        size = int(sys.argv[3])
        reply = stub.ModelInfer(request(size), timeout=30)
        data = reply.outputs[0].contents.bytes_contents[0] if reply.outputs[0].contents.bytes_contents else b""
        if data != b"x" * size:
            raw = reply.raw_output_contents[0] if reply.raw_output_contents else b""
            if raw[4:] != b"x" * size and raw != b"x" * size:
                sys.exit(f"MLServer echo reply does not hold the payload: {reply}")
        print(len(reply.SerializeToString()) + 5)


if __name__ == "__main__":
    main()
