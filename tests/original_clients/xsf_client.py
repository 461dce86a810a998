"""An xsf client made only of stubs compiled from the original AIGes protos (nothing of this
project is imported): ``python xsf_client.py STUBS_DIR`` with a JSON request on stdin, the JSON
answer on stdout.

Request: ``{"address", "mode": "once" | "session", "service_id", "params", "headers",
"expect": [names], "inputs": [{"name", "type", "data" (base64)}], "chunks": [[inputs], ...],
"handle"}``. A session is opened with ``s.h = handle`` (and, as a client would, the same
``headers.sid``), written chunk by chunk (sync_id 1, 2, ...; status 1, the last 2) and polled
with AIOut until the output's status is END; then AIExcp, as xtest does.

Answer: ``{"replies": [{"op", "code", "error_info", "handle", "output": {"code", "err",
"status", "pl": [{"name", "type", "attribute", "data"}]}}]}``.
"""

import base64
import json
import sys
import time

sys.path.insert(0, sys.argv[1])

import ai_pb2  # noqa: E402
import grpc  # noqa: E402
import xsf_pb2  # noqa: E402
import xsf_pb2_grpc  # noqa: E402

END = 2


def payloads(inputs, status):
    result = []
    for item in inputs:
        meta = ai_pb2.MetaDesc(
            name=item["name"],
            dataType=item.get("type", 0),
            attribute={"status": str(status), **item.get("attributes", {})},
        )
        result.append(ai_pb2.Payload(meta=meta, data=base64.b64decode(item["data"])))
    return result


def described(reply, op):
    entry = {"op": op, "code": reply.code, "error_info": reply.error_info, "handle": reply.s.h, "output": None}
    if reply.data:
        output = ai_pb2.LoaderOutput.FromString(reply.data[0].data)
        entry["output"] = {
            "code": output.code,
            "err": output.err,
            "status": output.status,
            "pl": [
                {
                    "name": p.meta.name,
                    "type": p.meta.dataType,
                    "attribute": dict(p.meta.attribute),
                    "data": base64.b64encode(p.data).decode(),
                }
                for p in output.pl
            ],
        }
    return entry


def main():
    request = json.load(sys.stdin)
    replies = []
    with grpc.insecure_channel(request["address"]) as channel:
        stub = xsf_pb2_grpc.XsfCallStub(channel)

        def call(op, handle, message, param):
            data = [xsf_pb2.DataMeta(data=message.SerializeToString())] if message is not None else []
            reply = stub.call(xsf_pb2.ReqData(op=op, s=xsf_pb2.Session(h=handle), param=param, data=data), timeout=60)
            replies.append(described(reply, op))
            return replies[-1]

        expect = [ai_pb2.MetaDesc(name=name) for name in request.get("expect", [])]
        first = ai_pb2.LoaderInput(
            serviceId=request.get("service_id", ""),
            headers=request.get("headers", {}),
            params=request.get("params", {}),
            expect=expect,
        )
        if request["mode"] == "once":
            first.state = ai_pb2.LoaderInput.ONCE
            first.pl.extend(payloads(request["inputs"], 3))
            call("AIIn", request.get("handle", ""), first, {"SeqNo": "1", "waitTime": "30000", "version": "v2"})
        else:
            handle = request["handle"]
            first.state = ai_pb2.LoaderInput.STREAM
            first.headers["sid"] = handle
            opened = call("AIIn", handle, first, {"SeqNo": "1", "waitTime": "1000", "version": "v2"})
            ended = opened["code"] != 0 or (opened["output"] and opened["output"]["code"] != 0)
            chunks = request["chunks"]
            for index, chunk in enumerate(chunks):
                if ended:
                    break
                status = END if index == len(chunks) - 1 else 1
                frame = ai_pb2.LoaderInput(
                    state=ai_pb2.LoaderInput.STREAM, sync_id=index + 1, pl=payloads(chunk, status)
                )
                reply = call("AIIn", handle, frame, {"waitTime": "0"})
                output = reply["output"]
                ended = output is not None and (output["code"] != 0 or output["status"] == END)
            deadline = time.monotonic() + 30
            while not ended and time.monotonic() < deadline:
                reply = call("AIOut", handle, ai_pb2.LoaderInput(), {"waitTime": "500"})
                output = reply["output"]
                ended = output is None or output["code"] != 0 or output["status"] == END
            call("AIExcp", handle, ai_pb2.LoaderInput(), {})
    json.dump({"replies": replies}, sys.stdout)


if __name__ == "__main__":
    main()
