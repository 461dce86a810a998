"""Helpers run with PyTriton's interpreter (its tritonclient brings the KServe v2 gRPC stubs):

tools.py body SIZE PATH     write a pre-framed gRPC ModelInferRequest body for h2load
tools.py ready ADDRESS      wait until the echo model is ready
tools.py check ADDRESS SIZE call ModelInfer once and print the framed reply size
"""

import struct
import sys
import time

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


def request(size: int) -> pb.ModelInferRequest:
    # Triton takes tensor data as raw_input_contents; a BYTES element is a 4-byte length + bytes.
    tensor = pb.ModelInferRequest().InferInputTensor(name="data", datatype="BYTES", shape=[1])
    raw = struct.pack("<I", size) + b"x" * size
    return pb.ModelInferRequest(model_name="echo", inputs=[tensor], raw_input_contents=[raw])


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
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name="echo"), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        sys.exit("PyTriton echo model not ready")
    if command == "check":
        size = int(sys.argv[3])
        reply = stub.ModelInfer(request(size), timeout=30)
        raw = reply.raw_output_contents[0] if reply.raw_output_contents else b""
        if raw[4:] != b"x" * size:
            sys.exit(f"PyTriton echo reply does not hold the payload: {reply.outputs}")
        print(len(reply.SerializeToString()) + 5)


if __name__ == "__main__":
    main()
