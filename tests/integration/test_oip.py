"""The Open Inference Protocol, driven by Triton's own clients (tritonclient 2.41): gRPC on the
service port, REST on the HTTP port."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
from conftest import ROOT, free_port
from google.protobuf.json_format import MessageToDict

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

ECHO = ROOT / "demo" / "echo"


def http_extra(port: int) -> str:
    return f'[http]\nlisten = "127.0.0.1:{port}"\n'


@pytest.fixture
def echo(serve):
    http_port = free_port()
    server = serve(ECHO, extra=http_extra(http_port))
    server.http = f"127.0.0.1:{http_port}"
    return server


@pytest.fixture
def tensors(serve):
    http_port = free_port()
    server = serve("tensors", extra=http_extra(http_port))
    server.http = f"127.0.0.1:{http_port}"
    return server


def text_input(module, name: str, *values: bytes):
    tensor = module.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=object))
    return tensor


@pytest.mark.parametrize("module", [grpcclient, httpclient], ids=["grpc", "http"])
def test_health_and_metadata(echo, module):
    url = echo.address if module is grpcclient else echo.http
    client = module.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("echo") and client.is_model_ready("echo", "v1")
    assert not client.is_model_ready("echo", "v9")
    metadata = client.get_model_metadata("echo")
    if module is grpcclient:
        metadata = MessageToDict(metadata, preserving_proto_field_name=True)
    assert metadata["name"] == "echo" and metadata["versions"] == ["v1"]
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("text", "BYTES")]
    assert [t["name"] for t in metadata["outputs"]] == ["text"]
    server = client.get_server_metadata()
    name = server.name if module is grpcclient else server["name"]
    assert name == "aiges"
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize(
    ("module", "binary"),
    [(grpcclient, True), (httpclient, True), (httpclient, False)],
    ids=["grpc", "http-binary", "http-json"],
)
def test_infer_bytes_with_parameters(echo, module, binary):
    url = echo.address if module is grpcclient else echo.http
    client = module.InferenceServerClient(url)
    tensor = module.InferInput("text", [1], "BYTES")
    if module is httpclient:
        tensor.set_data_from_numpy(np.array([b"hello"], dtype=object), binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("text", binary_data=binary)]
    else:
        tensor.set_data_from_numpy(np.array([b"hello"], dtype=object))
        outputs = [grpcclient.InferRequestedOutput("text")]
    result = client.infer("echo", [tensor], outputs=outputs, request_id="r-1", parameters={"prefix": ">> "})
    # JSON carries BYTES as strings, and tritonclient.http hands those back as str
    assert result.as_numpy("text").tolist() == [b">> hello" if binary else ">> hello"]
    response = result.get_response()
    request_id = response.id if module is grpcclient else response["id"]
    assert request_id == "r-1"


@pytest.mark.parametrize("module", [grpcclient, httpclient], ids=["grpc", "http"])
@pytest.mark.parametrize("datatype", ["FP32", "INT64", "UINT8"])
def test_numeric_tensors_keep_datatype_and_shape(tensors, module, datatype):
    url = tensors.address if module is grpcclient else tensors.http
    client = module.InferenceServerClient(url)
    array = np.arange(6, dtype={"FP32": np.float32, "INT64": np.int64, "UINT8": np.uint8}[datatype]).reshape(2, 3)
    tensor = module.InferInput("x", [2, 3], datatype)
    tensor.set_data_from_numpy(array)
    result = client.infer("tensors", [tensor])
    assert result.as_numpy("y").dtype == np.float32
    assert result.as_numpy("y").tolist() == (array.astype(np.float32) * 2).tolist()
    stats = json.loads(result.as_numpy("stats")[0])
    assert stats["datatype"] == datatype and stats["shape"] == [2, 3] and stats["sum"] == 15


@pytest.mark.parametrize("module", [grpcclient, httpclient], ids=["grpc", "http"])
def test_errors_carry_the_aiges_code(tensors, module):
    url = tensors.address if module is grpcclient else tensors.http
    client = module.InferenceServerClient(url)
    short = module.InferInput("x", [2, 3], "FP32")
    short.set_data_from_numpy(np.zeros(6, np.float32).reshape(2, 3))
    with pytest.raises(InferenceServerException, match="not served here"):
        client.infer("other", [short])
    with pytest.raises(InferenceServerException, match="10009: input 'x' is missing"):
        client.infer("tensors", [text_input(module, "z", b"a")])
    with pytest.raises(InferenceServerException, match="10009: unknown output 'nope'"):
        client.infer("tensors", [short], outputs=[module.InferRequestedOutput("nope")])
    result = client.infer("tensors", [short, text_input(module, "z", b"a")])  # z is not declared: passed on
    assert result.as_numpy("y").shape == (2, 3)
    assert json.loads(result.as_numpy("stats")[0])["inputs"] == ["x", "z"]


def test_grpc_errors_map_to_status_codes(tensors):
    client = grpcclient.InferenceServerClient(tensors.address)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("tensors", [text_input(grpcclient, "z", b"a")])
    assert missing.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("other", [text_input(grpcclient, "x", b"a")])
    assert unknown.value.status() == "StatusCode.NOT_FOUND"


def test_stream_infer_sequences_share_one_stream(echo):
    """Two sequences interleaved on one stream each come back whole, in order, tagged with
    their sequence id; a request without a sequence is a session of its own."""
    client = grpcclient.InferenceServerClient(echo.address)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    for step in range(3):
        for sequence in (11, 22):
            chunk = text_input(grpcclient, "text", f"{sequence}-{step}".encode())
            client.async_stream_infer(
                "echo",
                [chunk],
                request_id=f"{sequence}.{step}",
                sequence_id=sequence,
                sequence_start=step == 0,
                sequence_end=step == 2,
            )
    client.async_stream_infer("echo", [text_input(grpcclient, "text", b"alone")], request_id="solo")
    seen: dict[str, list[bytes]] = {}
    while sum(len(v) for v in seen.values()) < 7:
        result, error = results.get(timeout=10)
        assert error is None, error
        response = result.get_response()
        sequence_id = response.parameters["sequence_id"].string_param if "sequence_id" in response.parameters else ""
        seen.setdefault(sequence_id, []).extend(result.as_numpy("text").tolist())
    client.stop_stream()
    assert seen == {"11": [b"11-0", b"11-1", b"11-2"], "22": [b"22-0", b"22-1", b"22-2"], "": [b"alone"]}


def test_stream_infer_reports_errors_in_band_and_goes_on(echo):
    client = grpcclient.InferenceServerClient(echo.address)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    client.async_stream_infer("nope", [text_input(grpcclient, "text", b"x")], request_id="bad")
    client.async_stream_infer("echo", [text_input(grpcclient, "text", b"fine")], request_id="good")
    _, error = results.get(timeout=10)
    assert error is not None and "not served here" in str(error)
    result, error = results.get(timeout=10)
    assert error is None and result.as_numpy("text").tolist() == [b"fine"]
    client.stop_stream()


def test_grpc_typed_contents_instead_of_raw(tensors):
    """tritonclient always sends raw_input_contents; other clients send typed contents."""
    import grpc

    from aiges.protocol import oip_pb2

    request = oip_pb2.ModelInferRequest(model_name="tensors")
    tensor = request.inputs.add(name="x", datatype="INT32", shape=[3])
    tensor.contents.int_contents.extend([1, 2, 3])
    with grpc.insecure_channel(tensors.address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=oip_pb2.ModelInferRequest.SerializeToString,
            response_deserializer=oip_pb2.ModelInferResponse.FromString,
        )
        response = infer(request, timeout=10)
        names = [o.name for o in response.outputs]
        y = np.frombuffer(response.raw_output_contents[names.index("y")], np.float32)
        assert y.tolist() == [2.0, 4.0, 6.0] and list(response.outputs[names.index("y")].shape) == [3]
        tensor.contents.int_contents.append(4)
        with pytest.raises(grpc.RpcError) as wrong:
            infer(request, timeout=10)
        assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "shape [3] of INT32 needs 12 bytes, got 16" in wrong.value.details()


def test_stream_infer_on_a_wrapper_without_sessions_answers_each_request_once(tensors):
    client = grpcclient.InferenceServerClient(tensors.address)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    for value in (1, 2):
        tensor = grpcclient.InferInput("x", [1], "FP64")
        tensor.set_data_from_numpy(np.array([value], np.float64))
        client.async_stream_infer("tensors", [tensor], request_id=str(value))
    answers = {}
    for _ in range(2):
        result, error = results.get(timeout=10)
        assert error is None, error
        answers[result.get_response().id] = result.as_numpy("y").tolist()
    client.stop_stream()
    assert answers == {"1": [2.0], "2": [4.0]}


def test_stream_infer_rejects_a_sequence_that_is_not_open(echo):
    client = grpcclient.InferenceServerClient(echo.address)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    client.async_stream_infer("echo", [text_input(grpcclient, "text", b"x")], request_id="late", sequence_id=5)
    _, error = results.get(timeout=10)
    assert error is not None and "10101: sequence 5 is not open" in str(error)
    client.stop_stream()


def test_a_broken_message_on_the_stream_ends_it_and_frees_its_sessions(serve):
    """A message that does not decode: an in-band 10401, the stream ends, and the open sequence's
    session and licence are freed at once (not at the idle expiry, an hour away here)."""
    import grpc

    from aiges.protocol import oip_pb2

    server = serve(ECHO, licences=1, ttl=3_600_000)
    start = oip_pb2.ModelInferRequest(model_name="echo", id="s")
    start.parameters["sequence_id"].int64_param = 7
    start.parameters["sequence_start"].bool_param = True
    tensor = start.inputs.add(name="text", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"x")
    sent: queue.Queue = queue.Queue()

    def messages():
        while (message := sent.get()) is not None:
            yield message

    with grpc.insecure_channel(server.address) as channel:
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")(messages())
        sent.put(start.SerializeToString())
        first = oip_pb2.ModelStreamInferResponse.FromString(next(stream))
        assert first.error_message == "" and first.infer_response.id == "s"
        sent.put(b"\xff\xff\xff")
        replies = [oip_pb2.ModelStreamInferResponse.FromString(raw) for raw in stream]
        sent.put(None)
        assert replies and replies[-1].error_message.startswith("10401: a message is not a ModelInferRequest")
    client = grpcclient.InferenceServerClient(server.address)
    result = client.infer("echo", [text_input(grpcclient, "text", b"free")])
    assert result.as_numpy("text").tolist() == [b"free"]
