"""The ceiling: a bare grpc.aio server of utils.XsfCall/call that parses the LoaderInput and
echoes its payloads in-process. No engine, no workers: what a Python front alone costs."""

import argparse
import asyncio

import grpc

from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData


async def call(raw: bytes, context) -> bytes:
    request = ReqData.FromString(raw)
    message = LoaderInput.FromString(request.data[0].data)
    output = LoaderOutput(serviceId=message.serviceId, status=LoaderOutput.ONCE, pl=message.pl)
    return ResData(data=[DataMeta(data=output.SerializeToString())]).SerializeToString()


async def main(port: int, max_mb: int) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_mb << 20),
            ("grpc.max_send_message_length", max_mb << 20),
        ]
    )
    handler = grpc.method_handlers_generic_handler("utils.XsfCall", {"call": grpc.unary_unary_rpc_method_handler(call)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5091)
    parser.add_argument("--max-mb", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.max_mb))
