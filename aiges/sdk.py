"""What a class-style ``wrapper.py`` imports: ``WrapperBase`` and the field classes.

Import-compatible with the original AIGes Python SDK (``aiges`` 0.16.0 on PyPI): every name its
``aiges.sdk`` has is here too (the session helpers of ``aiges.stream``, the constants of
``aiges.core.types``, ``log``, ``callback`` and ``init_rq``), so existing wrappers load
unchanged::

    from aiges.sdk import WrapperBase, StringParamField, ImageBodyField, StringBodyField
    from aiges.dto import Response, ResponseData, DataListCls, SessionCreateResponse

    class UserRequest:
        p1 = StringParamField(key="p1", enums=["a", "b"], value="a")
        img = ImageBodyField(key="image", path="test_data/test.png")

    class UserResponse:
        accept1 = StringBodyField(key="result")

    class Wrapper(WrapperBase):
        serviceId = "demo"
        version = "v1"
        requestCls = UserRequest()
        responseCls = UserResponse()

        def wrapperInit(self, config: dict) -> int: ...
        def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "",
                            persId: int = 0) -> Response: ...
        def wrapperFini(self) -> int: ...

Declared fields. Params are optional unless ``required=True``, as in the original. Body fields
(inputs) are optional too - the original had no way to require one; ``required=True`` on a body
field is this SDK's extension: the server then answers 10009 to a call without it, and the
schema lists it as required. The server checks what is declared; inputs a wrapper does not
declare are passed to it as they come.

Streaming wrappers also define, with these argument orders (the older shim's orders, with a
trailing ``sid``, are accepted too)::

        def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse
        def wrapperWrite(self, handle: str, reqData: DataListCls) -> int
        def wrapperRead(self, handle: str) -> Response
        def wrapperDestroy(self, handle: str) -> int

A result item with status ``DataEnd`` (2) ends a session's output. ``self.session`` is a
``SessionManager`` (``aiges.stream``) for wrappers that keep a thread per session.

A one-shot wrapper may also define ``wrapperBatchExec`` to serve several queued calls in one go
(``[batch] max_size`` and ``max_delay_ms`` in aiges.toml turn batching on)::

        def wrapperBatchExec(self, params_list: list[dict], reqData_list: list[DataListCls]) -> list[Response]

It returns one Response per call, in order; a Response with a non-zero ``error_code`` (or None)
fails only its own caller.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import sys
from typing import Any

from aiges.call_context import CallContext, call_context
from aiges.dto import (
    DataListCls,
    DataListNode,
    Response,
    ResponseData,
    SessionCreateResponse,
    callback,
    init_rq,
)
from aiges.stream import (
    Context,
    ModelProcess,
    Pool,
    ProcessThreadPool,
    ReqHandleThread,
    RequestPool,
    SessionManager,
    StreamHandleThread,
    ThreadPool,
    WorkerProcess,
    WorkerThread,
    lock,
)
from aiges.types import *  # noqa: F403 - the original sdk re-exported the constants
from aiges.types import AUDIO, IMAGE, STRING, VIDEO, DataAudio, DataEnd, DataImage, DataOnce, DataText, DataVideo
from aiges.types import __all__ as _type_names
from aiges.utils.log import log

__all__ = [
    "WrapperBase",
    "Metaclass",
    "WrapperMeta",
    "Field",
    "ParamField",
    "StringParamField",
    "NumberParamField",
    "IntegerParamField",
    "BooleanParamField",
    "PayloadField",
    "StringBodyField",
    "ImageBodyField",
    "AudioBodyField",
    "VideoBodyField",
    "JsonBodyField",
    "SUB",
    "CALL",
    "CALL_TYPE",
    "HOSTS",
    "ROUTEKEY",
    "type_map",
    "tpl",
    "DataListCls",
    "DataListNode",
    "Response",
    "ResponseData",
    "SessionCreateResponse",
    "callback",
    "init_rq",
    "SessionManager",
    "Pool",
    "ThreadPool",
    "ProcessThreadPool",
    "WorkerThread",
    "WorkerProcess",
    "StreamHandleThread",
    "RequestPool",
    "ReqHandleThread",
    "ModelProcess",
    "Context",
    "call_context",
    "CallContext",
    "lock",
    "log",
    *_type_names,
]

# Schema defaults of the original SDK (a wrapper's class attributes override the first three).
SUB = "ase"
CALL = "atmos"
CALL_TYPE = 0
HOSTS = ["api.xf-yun.com"]
ROUTEKEY: list[str] = []

type_map = {"text": STRING, "audio": AUDIO, "image": IMAGE, "video": VIDEO}


class Field:
    """A declared request or response field. ``data_type`` is a data type code for body fields
    and a JSON type name ("string", "number", ...) for params, as in the original."""

    data_type: Any = None

    def __init__(
        self, key: str, data_type: Any = None, required: bool = False, description: str = "", title: str = ""
    ) -> None:
        self.key = key
        if data_type is not None:
            self.data_type = data_type
        self.required = required
        self.description = description
        self.title = title

    def __str__(self) -> str:
        return f"<{type(self).__name__}:{self.key}>"

    def _check_path(self, path: str) -> str:
        if path and not os.path.exists(path):
            log.warning("%s: %s does not exist", self, path)
        return path

    def _encode(self, dataType: Any, encoding: str, binary: bytes) -> bytes:  # noqa: N803
        return binary

    @property
    def test_value(self) -> Any:
        """The sample value ``run()`` and ``aiges check`` call the wrapper with."""
        return None


class ParamField(Field):
    """A capability parameter (``LoaderInput.params``)."""

    data_type = "string"

    @property
    def json_type(self) -> str:
        return self.data_type

    @property
    def test_value(self) -> Any:
        return getattr(self, "value", None)


class StringParamField(ParamField):
    data_type = "string"

    def __init__(
        self,
        key: str,
        minLength: int = 0,  # noqa: N803 - the original's argument names
        maxLength: int = 1024,  # noqa: N803
        enums: list[str] | None = None,
        required: bool = False,
        value: str = "",
        description: str = "",
        title: str = "",
    ) -> None:
        super().__init__(key, required=required, description=description, title=title)
        self.minLength = self.min_length = minLength
        self.maxLength = self.max_length = maxLength
        self.enums = list(enums or [])
        self.value = value


class NumberParamField(ParamField):
    data_type = "number"

    def __init__(
        self,
        key: str,
        minimum: float = 0,
        maximum: float = 100,
        enums: list[float] | None = None,
        required: bool = False,
        value: float = 0,
        description: str = "",
        title: str = "",
    ) -> None:
        super().__init__(key, required=required, description=description, title=title)
        self.minimum = minimum
        self.maximum = maximum
        self.enums = list(enums or [])
        self.value = value


class IntegerParamField(NumberParamField):
    data_type = "integer"


class BooleanParamField(ParamField):
    data_type = "boolean"

    def __init__(
        self, key: str, title: str = "", default: bool = False, required: bool = False, description: str = ""
    ) -> None:
        super().__init__(key, required=required, description=description, title=title)
        self.default = default
        self.value = default


class PayloadField(Field):
    """A data item (``LoaderInput.pl`` in a request, an ``expect`` entry in a response).
    Optional unless ``required=True`` (this SDK's extension; see the module docstring)."""

    data_type = DataText
    type_name = "text"

    def __init__(
        self,
        key: str,
        data_type: Any = None,
        required: bool = False,
        status: int = DataOnce,
        encoding: str = "",
        **attrs: Any,
    ) -> None:
        super().__init__(key, data_type, required=required)
        self.status = status
        self.encoding = encoding
        self.attrs = {k: v for k, v in attrs.items() if v is not None}

    @property
    def test_value(self) -> bytes:
        return b""


class StringBodyField(PayloadField):
    """Text (or JSON, or any bytes). ``value`` is the sample value; the original required bytes,
    a str is taken as its UTF-8 encoding here."""

    data_type = DataText
    type_name = "text"

    def __init__(
        self,
        key: str,
        value: bytes | str = b" ",
        need_base64: bool = False,
        encoding: str = "utf8",
        format: str = "plain",  # noqa: A002
        compress: str = "raw",
        status: int = DataOnce,
        required: bool = False,
    ) -> None:
        super().__init__(key, required=required, status=status, encoding=encoding, format=format, compress=compress)
        self.value = value.encode() if isinstance(value, str) else value
        self.text = self.value
        self.need_base64 = need_base64
        self.format = format
        self.compress = compress

    @property
    def test_value(self) -> bytes:
        return base64.b64encode(self.value) if self.need_base64 else self.value


class JsonBodyField(StringBodyField):
    """A JSON text; ``value`` may be the JSON text or any JSON-able value."""

    def __init__(self, key: str, value: Any = "", need_base64: bool = False, required: bool = False) -> None:
        if not isinstance(value, (bytes, str)):
            value = json.dumps(value)
        super().__init__(key, value=value, need_base64=need_base64, format="json", required=required)


class _FileBodyField(PayloadField):
    """A body field whose sample value is the file at ``path``."""

    missing_value = b""

    def __init__(
        self,
        key: str,
        path: str = "",
        status: int = DataOnce,
        encoding: str = "",
        required: bool = False,
        need_base64: bool = False,
        **attrs: Any,
    ) -> None:
        super().__init__(key, required=required, status=status, encoding=encoding, **attrs)
        self.path = self._check_path(path)
        self.need_base64 = need_base64

    @property
    def test_value(self) -> bytes:
        if not self.path or not os.path.exists(self.path):
            if self.path:
                log.warning("%s: %s does not exist", self, self.path)
            return self.missing_value
        with open(self.path, "rb") as sample:
            content = sample.read()
        return base64.b64encode(content) if self.need_base64 else content


class ImageBodyField(_FileBodyField):
    data_type = DataImage
    type_name = "image"
    missing_value = b"<your image base64 here>"  # the original's placeholder for a missing sample

    def __init__(
        self,
        key: str,
        path: str = "",
        need_base64: bool = False,
        encoding: str = "jpg",
        status: int = DataOnce,
        required: bool = False,
    ) -> None:
        super().__init__(key, path, status, encoding, required, need_base64)

    @property
    def image(self) -> bytes:
        """The sample image (read when asked for; the original read it at import)."""
        return self.test_value


class AudioBodyField(_FileBodyField):
    data_type = DataAudio
    type_name = "audio"

    def __init__(
        self,
        key: str,
        path: str = "",
        encoding: str = "raw",
        format: str = "plain",  # noqa: A002
        compress: str = "raw",
        status: int = DataOnce,
        required: bool = False,
        sample_rate: int | None = None,
        channels: int | None = None,
        bit_depth: int | None = None,
    ):
        super().__init__(
            key,
            path,
            status,
            encoding,
            required,
            format=format,
            compress=compress,
            sample_rate=sample_rate,
            channels=channels,
            bit_depth=bit_depth,
        )
        self.format = format
        self.compress = compress
        self.audio = b" "


class VideoBodyField(_FileBodyField):
    data_type = DataVideo
    type_name = "video"

    def __init__(
        self,
        key: str,
        path: str = "",
        encoding: str = "h264",
        status: int = DataOnce,
        required: bool = False,
        frame_rate: int | None = None,
    ):
        super().__init__(key, path, status, encoding, required, frame_rate=frame_rate)


def _declared(holder: Any, kinds: tuple[type, ...]) -> dict[str, Field]:
    """Fields declared on the class of ``holder`` (an instance, as in the original templates)."""
    if holder is None:
        return {}
    cls = holder if isinstance(holder, type) else type(holder)
    found: dict[str, Field] = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            if isinstance(value, kinds) and isinstance(value, Field):
                found[value.key] = value
    return found


class WrapperMeta(type):
    """Collects the declared fields into ``__mappings__`` when a Wrapper class is defined:
    ``{"params": {key: field}, "inputs": {...}, "accepts": {...}}``."""

    __mappings__: dict[str, dict[str, Any]]

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> WrapperMeta:
        cls = super().__new__(mcs, name, bases, namespace)
        request = namespace.get("requestCls", getattr(cls, "requestCls", None))
        response = namespace.get("responseCls", getattr(cls, "responseCls", None))
        cls.__mappings__ = {
            "params": _declared(request, (ParamField,)),
            "inputs": _declared(request, (PayloadField,)),
            "accepts": _declared(response, (PayloadField,)),
        }
        return cls


Metaclass = WrapperMeta  # the original's name for it


def _legacy_template() -> str:
    """The legacy schema as a template with the original's placeholder names ({{serviceId}},
    {{parameters}}, ...); ``WrapperBase.schema_legacy`` fills it in."""
    header_names = (
        "appid",
        "uid",
        "device_id",
        "device.imei",
        "device.imsi",
        "device.mac",
        "device.other",
        "net.type",
        "net.isp",
        "app.ver",
    )
    header = {
        "type": "object",
        "properties": {n: {"type": "string", "maxLength": 50} for n in header_names},
        "required": ["appid"],
    }
    return "\n".join(
        [
            '{"meta": {"serviceId": "{{serviceId}}", "version": "{{version}}", "route": "{{route}}",',
            '          "sub": "{{sub}}", "call": "{{call}}", "call_type": {{call_type}}, "hosts": "{{hosts}}",',
            '          "service": {{service}}, "routeKey": [],',
            '          "{{serviceId}}": {"input": {{inputs_fields}}, "accept": {{accepts_fields}} } },',
            ' "schemainput": {"type": "object", "properties": {',
            '     "header": ' + json.dumps(header) + ",",
            '     "parameter": {"type": "object", "properties": {"{{serviceId}}": {"type": "object",',
            '                   "properties": {{parameters}}, "required": {{required_paramters}} } } },',
            '     "payload": {"type": "object", "properties": {{inputs_payload}} } } },',
            ' "schemaoutput": {"type": "object", "properties": {',
            '     "payload": {"type": "object", "properties": {{accepts_payloads}} } } } }',
        ]
    )


tpl = _legacy_template()

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

RUN_STREAM_TIMEOUT_S = 60.0


class WrapperBase(metaclass=WrapperMeta):
    """Subclass as ``Wrapper`` in your ``wrapper.py``; aiges instantiates it with no arguments
    once per worker process."""

    __mappings__: dict[str, dict[str, Any]]

    serviceId: str = ""
    version: str = "v1"
    requestCls: Any = None
    responseCls: Any = None
    call: str = CALL
    sub: str = SUB
    route: str | None = None
    call_type: str = "0"
    config: dict[str, str] = {}

    def __init__(self, legacy: bool = True, is_aipaas: bool = True, keep_schema_default_value: bool = True) -> None:
        self.inputs_test_values: dict[str, bytes] = {}
        self.params_test_values: dict[str, Any] = {}
        self.respData: list[Any] = []
        self.session = SessionManager()
        self.legacy = legacy
        self.is_aipaas = is_aipaas
        self.keep_schema_default_value = keep_schema_default_value
        self._schema: dict[str, Any] | None = None

    # -- the calls a loader makes --------------------------------------------------------------

    def wrapperInit(self, config: dict[str, str]) -> int:  # noqa: N802
        raise NotImplementedError("wrapperInit is not implemented")

    def wrapperFini(self) -> int:  # noqa: N802
        raise NotImplementedError("wrapperFini is not implemented")

    def wrapperOnceExec(
        self,
        params: dict[str, str],
        reqData: DataListCls,
        usrTag: str = "",  # noqa: N802,N803
        persId: int = 0,
    ) -> Response:  # noqa: N803
        raise NotImplementedError("wrapperOnceExec is not implemented")

    def wrapperOnceExecAsync(
        self,
        params: dict[str, str],
        reqData: DataListCls,
        sid: str,  # noqa: N802,N803
        persId: int = 0,
    ) -> int:  # noqa: N803
        raise NotImplementedError("wrapperOnceExecAsync is not implemented")

    def wrapperError(self, ret: int) -> str:  # noqa: N802
        return ""

    def wrapperLoadRes(self, reqData: DataListCls, resId: int) -> int:  # noqa: N802,N803
        return 0

    def wrapperUnloadRes(self, resId: int) -> int:  # noqa: N802,N803
        return 0

    def wrapperCreate(
        self,
        params: dict[str, str],
        sid: str,
        persId: int = 0,  # noqa: N802,N803
        usrTag: str = "",
    ) -> SessionCreateResponse:  # noqa: N803
        raise NotImplementedError("wrapperCreate is not implemented: this wrapper serves one-shot calls only")

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:  # noqa: N802,N803
        """Does nothing (the original's default), for wrappers whose sessions need no input."""
        return 0

    def wrapperRead(self, handle: str) -> Response | list[Any]:  # noqa: N802
        """Nothing ready (the original's default), for wrappers that deliver through the callback."""
        return []

    def wrapperDestroy(self, handle: str) -> int:  # noqa: N802
        return 0

    # -- schema ---------------------------------------------------------------------------------

    def schema(self) -> str:
        """The declared fields as schema JSON text: the legacy form (``legacy=True``, the
        default) or the one the server serves (``schema_v2``)."""
        return self.schema_legacy() if self.legacy else self.schema_v2()

    def schema_v2(self) -> str:
        """The schema ``aiges serve`` and ``aiges schema`` publish ({meta, schemainput,
        schemaoutput}), as JSON text."""
        from aiges.schema import build_schema

        self._schema = build_schema(type(self))
        return json.dumps(self._schema, ensure_ascii=False)

    def schema_legacy(self) -> str:
        """The legacy schema (``tpl`` filled in) as indented JSON text."""
        from aiges.schema import param_schema, payload_schema, route_of

        mappings = type(self).__mappings__
        service_id, version = str(self.serviceId), str(self.version)

        def names(fields: dict[str, PayloadField]) -> str:
            return json.dumps({key: {"dataType": f.type_name} for key, f in fields.items()})

        text = {
            "serviceId": service_id,
            "version": version,
            "route": route_of(service_id, version, self.route),
            "sub": str(self.sub),
            "call": str(self.call),
            "hosts": HOSTS[0],
        }
        values = {key: json.dumps(value)[1:-1] for key, value in text.items()}
        values.update(
            {
                "call_type": json.dumps(int(self.call_type or 0)),
                "service": json.dumps([service_id]),
                "inputs_fields": names(mappings["inputs"]),
                "accepts_fields": names(mappings["accepts"]),
                "parameters": json.dumps({key: param_schema(f) for key, f in mappings["params"].items()}),
                "required_paramters": json.dumps([key for key, f in mappings["params"].items() if f.required]),
                "inputs_payload": json.dumps({key: payload_schema(f) for key, f in mappings["inputs"].items()}),
                "accepts_payloads": json.dumps(
                    {key: payload_schema(f, output=True) for key, f in mappings["accepts"].items()}
                ),
            }
        )
        rendered = _PLACEHOLDER.sub(lambda match: values[match.group(1)], tpl)
        self._schema = json.loads(rendered)
        return json.dumps(self._schema, indent=4, ensure_ascii=False)

    # -- trying a wrapper out locally (``python wrapper.py``) -------------------------------------

    def printPythonInfo(self) -> None:  # noqa: N802
        print(f"### Current Using Python: {sys.executable} ###")
        print(f"### Current Python Version: {sys.version} ###")

    def gradio(self) -> None:
        raise NotImplementedError(
            "WrapperBase.gradio: this aiges has no gradio UI; try a call with `aiges call`, "
            "or the docs page of `aiges serve` ([http] listen, /docs)"
        )

    def run(self, stream: bool = False) -> None:
        """Try the wrapper with the declared sample values, logging what is wrong:
        wrapperInit, then one wrapperOnceExec (checked by ``check_resp``), or with ``stream`` a
        session (wrapperCreate, wrapperWrite, results through ``callback``)."""
        if stream:
            self.run_stream()
        else:
            self.run_once()

    def _test_request(self, status: int = DataOnce) -> tuple[dict[str, Any], DataListCls]:
        mappings = type(self).__mappings__
        self.params_test_values = {key: f.test_value for key, f in mappings["params"].items()}
        self.inputs_test_values = {key: f.test_value for key, f in mappings["inputs"].items()}
        nodes = [
            DataListNode(key, value, len(value), mappings["inputs"][key].data_type, status)
            for key, value in self.inputs_test_values.items()
        ]
        return dict(self.params_test_values), DataListCls(nodes)

    def run_once(self) -> None:
        self.wrapperInit(self.config)
        try:
            params, request = self._test_request()
            response = self.wrapperOnceExec(params, request)
            if self.check_resp(response):
                log.info("wrapper.py has been verified: wrapperOnceExec answered as declared")
            else:
                log.error("wrapper.py failed the check; see the errors above")
        except Exception as exc:  # noqa: BLE001 - report what the user's code did
            log.error("wrapperOnceExec raised %s: %s", type(exc).__name__, exc)
            self.wrapperError(-1)

    def run_stream(self, timeout: float = RUN_STREAM_TIMEOUT_S) -> None:
        """One session with the sample values written as its only (last) chunk; waits up to
        ``timeout`` seconds for a result with status END through ``callback``.

        The original wrote the chunk with status ONCE, which its own stream example never
        answers with an end, and then waited forever."""
        from aiges.plugins.contract import bind_arguments
        from aiges.plugins.pyclass import CREATE_ORDER, WRITE_ORDER

        results = init_rq()
        self.wrapperInit(self.config)
        params, request = self._test_request(status=DataEnd)
        sid = "test-111111"
        created = bind_arguments(self.wrapperCreate, CREATE_ORDER)(
            {"params": params, "sid": sid, "pers": 0, "tag": sid}
        )
        handle = getattr(created, "handle", created)
        if getattr(created, "error_code", 0) or not handle:
            log.error("wrapperCreate failed: %r", created)
            return
        log.info("session handle %s", handle)
        bind_arguments(self.wrapperWrite, WRITE_ORDER)({"handle": handle, "req": request, "sid": sid})
        while True:
            try:
                response = results.get(timeout=timeout)
            except queue.Empty:
                log.error("no result with status END within %.0f s", timeout)
                return
            if any(item.status in (DataEnd, DataOnce) for item in response.list):
                log.info("the session ended")
                return

    def check_resp(self, resp: Any) -> bool:
        """Whether a one-shot result is as the original loader wanted it, logging each problem:
        a Response with items of bytes data whose ``len`` is right, unique keys, status ONCE,
        and each key a declared output of the declared type."""
        if not isinstance(resp, Response):
            log.error("wrapperOnceExec must return a Response, got %s", type(resp).__name__)
            return False
        if not resp.list:
            log.error("the Response has no items (response.list is empty)")
            return False
        if resp.error_code != 0:
            return True
        for item in resp.list:
            if not isinstance(item.data, (bytes, memoryview)):
                log.error(
                    "ResponseData %r: data must be bytes or memoryview, got %s", item.key, type(item.data).__name__
                )
                return False
            if item.len != len(item.data):
                log.error("ResponseData %r: len is %d but the data has %d bytes", item.key, item.len, len(item.data))
                return False
        keys = [item.key for item in resp.list]
        log.info("response keys: %s", keys)
        if len(keys) != len(set(keys)):
            log.error("response keys must be unique, got %s", keys)
            return False
        for item in resp.list:
            if item.status != DataOnce:
                log.error("ResponseData %r: status is %d, a one-shot result needs %d", item.key, item.status, DataOnce)
                return False
        accepts = {key: f.data_type for key, f in type(self).__mappings__["accepts"].items()}
        for item in resp.list:
            if item.key not in accepts:
                log.error(
                    "ResponseData %r is not a declared output (UserResponse declares %s)", item.key, sorted(accepts)
                )
                return False
            if item.type != accepts[item.key]:
                log.error("ResponseData %r: type %d, declared %d", item.key, item.type, accepts[item.key])
                return False
        return True
