"""The platform's clients calling in a loop: ``RATE`` one-shot calls a second for ``SECONDS``
seconds, each signed anew by the original AIGes package's own ``ne_utils.build_auth_request_url``
(host, date to the second, request-line; no nonce), so calls within one second carry the same
signature, as the platform's clients send them:

    python platform_calls.py WHEEL_ROOT STUBS_DIR http URL API_KEY API_SECRET RATE SECONDS
    python platform_calls.py WHEEL_ROOT STUBS_DIR grpc ADDRESS API_KEY API_SECRET RATE SECONDS

``http``: an ASE JSON POST to the signed URL. ``grpc``: an xsf ``AIIn`` one-shot call (stubs
compiled from the original protos, in STUBS_DIR), the signed URL's ``host``, ``date`` and
``authorization`` sent as metadata, signed over ``POST /utils.XsfCall/call``. Prints a JSON
list, a call each: ``{"status", "code", "authorization"}`` (status: the HTTP status, or the
gRPC status name; code: the AIGes code of the answer, 0 when served).

The original ``aiges`` package is imported from WHEEL_ROOT, put first on sys.path, so this
process never sees this project's ``aiges``.
"""

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

wheel_root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(wheel_root))
if sys.argv[3] == "grpc":
    sys.path.insert(0, sys.argv[2])

from aiges.client.utils import ne_utils  # noqa: E402

if not Path(ne_utils.__file__).resolve().is_relative_to(wheel_root):
    raise SystemExit(f"imported {ne_utils.__file__}, not the original package under {wheel_root}")

XSF_METHOD = "/utils.XsfCall/call"


def http_call(url, key, secret):
    signed = ne_utils.build_auth_request_url(url, "POST", key, secret)
    body = {"header": {"app_id": "platform", "status": 3}, "payload": {"text": {"text": "eA==", "status": 3}}}
    request = urllib.request.Request(
        signed, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    authorization = parse_qs(urlsplit(signed).query)["authorization"][0]
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = json.loads(reply.read())
            return {"status": reply.status, "code": answer["header"]["code"], "authorization": authorization}
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
        return {"status": error.code, "code": answer["header"]["code"], "authorization": authorization}


def grpc_caller(address):
    import ai_pb2
    import grpc
    import xsf_pb2
    import xsf_pb2_grpc

    channel = grpc.insecure_channel(address)
    stub = xsf_pb2_grpc.XsfCallStub(channel)
    host = address.rsplit(":", 1)[0]

    def call(_, key, secret):
        signed = ne_utils.build_auth_request_url(f"http://{host}{XSF_METHOD}", "POST", key, secret)
        query = {name: values[0] for name, values in parse_qs(urlsplit(signed).query).items()}
        message = ai_pb2.LoaderInput(
            state=ai_pb2.LoaderInput.ONCE,
            expect=[ai_pb2.MetaDesc(name="text")],
            pl=[ai_pb2.Payload(meta=ai_pb2.MetaDesc(name="text", attribute={"status": "3"}), data=b"x")],
        )
        request = xsf_pb2.ReqData(
            op="AIIn", param={"SeqNo": "1"}, data=[xsf_pb2.DataMeta(data=message.SerializeToString())]
        )
        try:
            reply = stub.call(request, metadata=list(query.items()), timeout=30)
        except grpc.RpcError as exc:
            trailers = dict(exc.trailing_metadata() or ())
            code = int(trailers.get("aiges-code", -1))
            return {"status": exc.code().name, "code": code, "authorization": query["authorization"]}
        output = ai_pb2.LoaderOutput.FromString(reply.data[0].data)
        return {"status": "OK", "code": reply.code or output.code, "authorization": query["authorization"]}

    return call


def main():
    mode, target, key, secret = sys.argv[3:7]
    rate, seconds = float(sys.argv[7]), float(sys.argv[8])
    call = grpc_caller(target) if mode == "grpc" else http_call
    results = []
    started = time.monotonic()
    for index in range(int(rate * seconds)):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the client's own pace: RATE calls a second
        results.append(call(target, key, secret))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
