"""The user-facing SDK keeps the original's import names and value-object behaviour."""

from aiges.dto import DataListCls, DataListNode, Response, ResponseData, SessionCreateResponse
from aiges.sdk import (
    AudioBodyField,
    BooleanParamField,
    ImageBodyField,
    IntegerParamField,
    JsonBodyField,
    NumberParamField,
    StringBodyField,
    StringParamField,
    VideoBodyField,
    WrapperBase,
)
from aiges.types import DataEnd, DataOnce, Once


def test_response_data_len_follows_data():
    item = ResponseData()
    item.setData(b"abcd")
    assert item.len == 4
    item.data = b"ab"
    assert item.len == 2
    assert ResponseData(key="k", data=b"xyz").len == 3


def test_response_defaults_and_error():
    response = Response()
    assert len(response.list) == 1 and response.error_code == 0
    assert response.response_err(5) is response and response.error_code == 5
    assert SessionCreateResponse().handle == ""


def test_data_list_get():
    nodes = DataListCls([DataListNode("a", b"1"), DataListNode("b", b"22")])
    b = nodes.get("b")
    assert b is not None and b.len == 2
    assert nodes.get("c") is None


def test_wrapper_fields_are_collected():
    class Req:
        p = StringParamField(key="p", enums=["x"])
        n = NumberParamField(key="n")
        i = IntegerParamField(key="i")
        b = BooleanParamField(key="b")
        img = ImageBodyField(key="img")
        aud = AudioBodyField(key="aud", sample_rate=16000)
        vid = VideoBodyField(key="vid")

    class Resp:
        out = StringBodyField(key="out")
        js = JsonBodyField(key="js", value={"a": 1})

    class Wrapper(WrapperBase):
        requestCls = Req()
        responseCls = Resp()

    mappings = Wrapper.__mappings__
    assert set(mappings["params"]) == {"p", "n", "i", "b"}
    assert set(mappings["inputs"]) == {"img", "aud", "vid"}
    assert set(mappings["accepts"]) == {"out", "js"}
    assert mappings["inputs"]["aud"].attrs["sample_rate"] == 16000
    assert (DataEnd, DataOnce, Once) == (2, 3, 3)


def test_body_fields_are_optional_unless_required():
    from aiges.schema import build_schema

    class Req:
        text = StringBodyField(key="text")
        image = ImageBodyField(key="image")
        must = AudioBodyField(key="must", required=True)
        p = StringParamField(key="p", required=True)

    class Wrapper(WrapperBase):
        serviceId = "opt"
        requestCls = Req()

    assert not StringBodyField(key="a").required and not JsonBodyField(key="j").required
    schema = build_schema(Wrapper)["schemainput"]
    assert schema["properties"]["payload"]["required"] == ["must"] and schema["required"] == ["payload"]
    assert schema["properties"]["parameter"]["properties"]["opt"]["required"] == ["p"]
    Req.must.required = False
    Wrapper2 = type("Wrapper2", (WrapperBase,), {"serviceId": "opt", "requestCls": Req()})
    schema = build_schema(Wrapper2)["schemainput"]
    assert "required" not in schema["properties"]["payload"] and "required" not in schema


def test_fields_take_the_originals_arguments_and_attributes(tmp_path):
    sample = tmp_path / "a.png"
    sample.write_bytes(b"PNG")
    image = ImageBodyField("img", str(sample), True, "png", 3)
    assert image.test_value == b"UE5H" and image.image == b"UE5H" and image.data_type == 2
    assert ImageBodyField(key="x", path=str(tmp_path / "none.png")).test_value == b"<your image base64 here>"
    text = StringBodyField("t", b"v", False, "utf8", "plain", "raw", 3)
    assert (text.test_value, text.format, text.compress, str(text)) == (b"v", "plain", "raw", "<StringBodyField:t>")
    param = StringParamField("p", 1, 9, [], False, "d")
    assert (param.min_length, param.max_length, param.data_type, param.test_value) == (1, 9, "string", "d")
    assert IntegerParamField(key="i").data_type == "integer" and BooleanParamField(key="b").test_value is False
    assert AudioBodyField(key="a").test_value == b""


def test_session_manager_hands_out_and_takes_back_handles():
    import threading

    from aiges.stream import HandlePoolNotInitialised, SessionManager, StreamHandleThread

    manager = SessionManager()
    try:
        manager.get_idle_handle()
    except AttributeError as exc:  # the original raised AttributeError here too
        assert isinstance(exc, HandlePoolNotInitialised) and "init_handle_pool" in str(exc)
    else:
        raise AssertionError("an uninitialised manager handed out a handle")

    seen = []

    class Echo(StreamHandleThread):
        def run(self):
            while True:
                request = self.in_q.get()
                seen.append((self.session_thread.sid, request))
                deliver = self.session_thread.callback_fn
                assert deliver is not None, "the session has its callback before its first chunk"
                deliver(request.upper(), self.session_thread.sid)
                self.session_thread.reset()

    manager.init_handle_pool("thread", 2, Echo)
    assert manager.initialized and set(manager.handle_pool.workers) == {"Process-0-Thread-0", "Process-0-Thread-1"}
    first, second = manager.get_idle_handle(), manager.get_idle_handle()
    assert first is not None and second is not None
    assert {first, second} == set(manager.handle_pool.workers) and manager.get_idle_handle() is None
    session = manager.get_session(first)
    assert session is not None and session.daemon and not session.idle and manager.get_session("nope") is None
    delivered = threading.Event()
    session.setup_sid("sid-1")
    session.setup_params({"a": "1"})
    session.setup_callback_fn(lambda result, sid: delivered.set() if (result, sid) == ("HI", "sid-1") else None)
    session.in_q.put("hi")
    assert delivered.wait(10) and seen == [("sid-1", "hi")]
    assert manager.get_idle_handle() == first  # its thread reset it after the result
    manager.push_back(second)
    assert manager.get_idle_handle() == second
    returned = manager.get_session(second)
    assert returned is not None and returned.params == {}


def test_process_mode_gives_usable_handles():
    from aiges.stream import SessionManager, StreamHandleThread

    class Idle(StreamHandleThread):
        def init_model(self, handle):
            return None

    manager = SessionManager()
    manager.init_handle_pool("process", 3, Idle)
    assert len(manager.handle_pool.workers) == 10 and manager.get_idle_handle() == "Process-0-Thread-0"


def test_dto_callback_queues_locally_and_forwards_inside_a_worker(monkeypatch):
    import sys
    import types

    import pytest

    from aiges import dto

    monkeypatch.setattr(dto, "result_Queue", None)
    monkeypatch.delitem(sys.modules, "aiges_embed", raising=False)
    with pytest.raises(RuntimeError, match="init_rq"):
        dto.callback(Response(), "sid")
    results = dto.init_rq()
    assert dto.callback(Response(), "sid") == 0 and results.qsize() == 1
    embedded = types.ModuleType("aiges_embed")
    forwarded = []

    def forward(response, tag, *rest):
        forwarded.append(tag)
        return 0

    monkeypatch.setattr(embedded, "callback", forward, raising=False)
    monkeypatch.setitem(sys.modules, "aiges_embed", embedded)
    dto.callback(Response(), "sid-2")
    assert forwarded == ["sid-2"] and results.qsize() == 1


def test_run_stream_tries_a_session_through_the_callback(caplog):
    import logging

    from aiges.sdk import StreamHandleThread, callback

    class Chunks(StreamHandleThread):
        def run(self):
            request = self.in_q.get()
            item = ResponseData(key="out", data=request.list[0].data, status=request.list[0].status)
            deliver = self.session_thread.callback_fn
            assert deliver is not None, "wrapperCreate sets the callback"
            deliver(Response([item]), self.session_thread.sid)

    class Req:
        text = StringBodyField(key="text", value=b"sample")

    class Wrapper(WrapperBase):
        requestCls = Req()

        def wrapperInit(self, config):
            self.session.init_handle_pool("thread", 1, Chunks)
            return 0

        def wrapperCreate(self, params, sid, persId=0, usrTag=""):
            handle = self.session.get_idle_handle()
            assert handle is not None, "one session at a time, on a pool of one"
            thread = self.session.get_session(handle)
            assert thread is not None
            thread.setup_sid(sid)
            thread.setup_params(params)
            thread.setup_callback_fn(callback)
            return SessionCreateResponse(handle=handle)

        # the original's examples take the sid too; the loader and run() bind by parameter name
        def wrapperWrite(self, handle, req, sid):  # type: ignore[override]
            thread = self.session.get_session(handle)
            assert thread is not None
            thread.in_q.put(req)
            return 0

    with caplog.at_level(logging.INFO, logger="wrapper"):
        Wrapper().run(stream=True)
    assert "the session ended" in caplog.text and "callback: out: len 6" in caplog.text


def test_legacy_schema_and_check_resp():
    import json

    class Req:
        p = StringParamField(key="p", required=True)
        img = ImageBodyField(key="img")

    class Resp:
        accept1 = StringBodyField(key="out")

    class Wrapper(WrapperBase):
        serviceId = "legacy"
        version = "v3"
        requestCls = Req()
        responseCls = Resp()

    wrapper = Wrapper()
    legacy = json.loads(wrapper.schema())
    assert legacy["meta"]["hosts"] == "api.xf-yun.com" and legacy["meta"]["route"] == "/v3/private/legacy"
    assert legacy["meta"]["legacy"] == {
        "input": {"img": {"dataType": "image"}},
        "accept": {"out": {"dataType": "text"}},
    }
    parameter = legacy["schemainput"]["properties"]["parameter"]["properties"]["legacy"]
    assert parameter["required"] == ["p"] and "appid" in legacy["schemainput"]["properties"]["header"]["properties"]
    assert json.loads(Wrapper(legacy=False).schema())["meta"]["service"] == ["legacy"]
    good = ResponseData(key="out", data=b"x")
    assert wrapper.check_resp(Response([good]))
    assert not wrapper.check_resp(Response([ResponseData(key="other", data=b"x")]))
    assert not wrapper.check_resp(Response([good, ResponseData(key="out", data=b"y")]))
    assert not wrapper.check_resp(None)


def test_original_error_constants_and_type_names():
    from aiges.core.types import Status, Types
    from aiges.errors import INIT_ERROR, OK, USER_EXEC_ERROR, USER_INIT_ERROR

    assert (OK, INIT_ERROR, USER_INIT_ERROR, USER_EXEC_ERROR) == (0, 30001, 30002, 30003)
    assert Types[2] == "image" and Status[DataEnd] == "end"


def test_wrapper_log_prints_alone_and_defers_to_a_configured_logging():
    import subprocess
    import sys

    alone = "from aiges.utils.log import log; log.info('hello'); log.debug('hidden')"
    configured = "import logging; logging.basicConfig(format='ROOT %(message)s'); " + alone
    for code, expected in ((alone, " - INFO:  hello"), (configured, "ROOT hello")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert done.stderr.count("hello") == 1 and expected in done.stderr and "hidden" not in done.stderr


def test_the_sdk_needs_neither_jinja2_nor_pydantic():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['jinja2'] = sys.modules['pydantic'] = None\n"
        "import aiges.sdk, aiges.stream, aiges.dto\n"
        "class W(aiges.sdk.WrapperBase):\n    serviceId = 's'\n"
        "print(len(W().schema()) > 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "True", done.stderr
