"""What a class-style ``wrapper.py`` imports: ``WrapperBase`` and the field classes.

Import-compatible with the original AIGes Python SDK, so existing wrappers load unchanged::

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

Streaming wrappers also define, with these argument orders (the older shim's orders, with a
trailing ``sid``, are accepted too)::

        def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse
        def wrapperWrite(self, handle: str, reqData: DataListCls) -> int
        def wrapperRead(self, handle: str) -> Response
        def wrapperDestroy(self, handle: str) -> int

A result item with status ``DataEnd`` (2) ends a session's output.

A one-shot wrapper may also define ``wrapperBatchExec`` to serve several queued calls in one go
(``[batch] max_size`` and ``max_delay_ms`` in aiges.toml turn batching on)::

        def wrapperBatchExec(self, params_list: list[dict], reqData_list: list[DataListCls]) -> list[Response]

It returns one Response per call, in order; a Response with a non-zero ``error_code`` (or None)
fails only its own caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiges.dto import DataListCls, Response, SessionCreateResponse
from aiges.types import DataAudio, DataImage, DataOnce, DataText, DataVideo

__all__ = [
    "WrapperBase",
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
]


class Field:
    """A declared request or response field."""

    def __init__(self, key: str, required: bool = False, description: str = "", title: str = "") -> None:
        self.key = key
        self.required = required
        self.description = description
        self.title = title


class ParamField(Field):
    """A capability parameter (``LoaderInput.params``)."""

    json_type = "string"

    def test_value(self) -> Any:
        return getattr(self, "value", None)


class StringParamField(ParamField):
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
        super().__init__(key, required, description, title)
        self.minLength = minLength
        self.maxLength = maxLength
        self.enums = list(enums or [])
        self.value = value


class NumberParamField(ParamField):
    json_type = "number"

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
        super().__init__(key, required, description, title)
        self.minimum = minimum
        self.maximum = maximum
        self.enums = list(enums or [])
        self.value = value


class IntegerParamField(NumberParamField):
    json_type = "integer"


class BooleanParamField(ParamField):
    json_type = "boolean"

    def __init__(
        self, key: str, title: str = "", default: bool = False, required: bool = False, description: str = ""
    ) -> None:
        super().__init__(key, required, description, title)
        self.default = default
        self.value = default


class PayloadField(Field):
    """A data item (``LoaderInput.pl`` in a request, an ``expect`` entry in a response)."""

    data_type = DataText
    type_name = "text"

    def __init__(self, key: str, required: bool = True, status: int = DataOnce, encoding: str = "", **attrs: Any):
        super().__init__(key, required)
        self.status = status
        self.encoding = encoding
        self.attrs = {k: v for k, v in attrs.items() if v is not None}

    def test_value(self) -> bytes:
        return b""


class StringBodyField(PayloadField):
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
        required: bool = True,
    ) -> None:
        super().__init__(key, required, status, encoding, format=format, compress=compress)
        self.value = value.encode() if isinstance(value, str) else value
        self.need_base64 = need_base64

    def test_value(self) -> bytes:
        return self.value


class JsonBodyField(StringBodyField):
    def __init__(self, key: str, value: Any = "", need_base64: bool = False, required: bool = True) -> None:
        if not isinstance(value, (bytes, str)):
            import json

            value = json.dumps(value)
        super().__init__(key, value=value, need_base64=need_base64, format="json", required=required)


class _FileBodyField(PayloadField):
    def __init__(self, key: str, path: str = "", status: int = DataOnce, encoding: str = "", required: bool = True,
                 **attrs: Any) -> None:
        super().__init__(key, required, status, encoding, **attrs)
        self.path = path

    def test_value(self) -> bytes:
        return Path(self.path).read_bytes() if self.path else b""


class ImageBodyField(_FileBodyField):
    data_type = DataImage
    type_name = "image"

    def __init__(self, key: str, path: str = "", need_base64: bool = False, encoding: str = "jpg",
                 status: int = DataOnce, required: bool = True) -> None:
        super().__init__(key, path, status, encoding, required)
        self.need_base64 = need_base64


class AudioBodyField(_FileBodyField):
    data_type = DataAudio
    type_name = "audio"

    def __init__(self, key: str, path: str = "", encoding: str = "raw", format: str = "plain",  # noqa: A002
                 compress: str = "raw", status: int = DataOnce, required: bool = True,
                 sample_rate: int | None = None, channels: int | None = None, bit_depth: int | None = None):
        super().__init__(key, path, status, encoding, required, format=format, compress=compress,
                         sample_rate=sample_rate, channels=channels, bit_depth=bit_depth)


class VideoBodyField(_FileBodyField):
    data_type = DataVideo
    type_name = "video"

    def __init__(self, key: str, path: str = "", encoding: str = "h264", status: int = DataOnce,
                 required: bool = True, frame_rate: int | None = None):
        super().__init__(key, path, status, encoding, required, frame_rate=frame_rate)


def _declared(holder: Any, kinds: tuple[type, ...]) -> dict[str, Field]:
    """Fields declared on the class of ``holder`` (an instance, as in the original templates)."""
    if holder is None:
        return {}
    cls = holder if isinstance(holder, type) else type(holder)
    found: dict[str, Field] = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            if isinstance(value, kinds):
                found[value.key] = value
    return found


class WrapperMeta(type):
    """Collects the declared fields into ``__mappings__`` when a Wrapper class is defined."""

    def __new__(mcs, name, bases, namespace):
        cls = super().__new__(mcs, name, bases, namespace)
        request = namespace.get("requestCls", getattr(cls, "requestCls", None))
        response = namespace.get("responseCls", getattr(cls, "responseCls", None))
        cls.__mappings__ = {
            "params": _declared(request, (ParamField,)),
            "inputs": _declared(request, (PayloadField,)),
            "accepts": _declared(response, (PayloadField,)),
        }
        return cls


class WrapperBase(metaclass=WrapperMeta):
    """Subclass as ``Wrapper`` in your ``wrapper.py``; aiges instantiates it with no arguments
    once per worker process."""

    serviceId: str = ""
    version: str = "v1"
    requestCls: Any = None
    responseCls: Any = None
    call: str = "atmos"
    sub: str = "ase"
    route: str | None = None
    call_type: str = "0"
    config: dict[str, str] = {}

    def __init__(self, legacy: bool = True, is_aipaas: bool = True, keep_schema_default_value: bool = True) -> None:
        self.legacy = legacy
        self.is_aipaas = is_aipaas
        self.keep_schema_default_value = keep_schema_default_value

    def wrapperInit(self, config: dict[str, str]) -> int:  # noqa: N802
        raise NotImplementedError("wrapperInit is not implemented")

    def wrapperFini(self) -> int:  # noqa: N802
        raise NotImplementedError("wrapperFini is not implemented")

    def wrapperOnceExec(self, params: dict[str, str], reqData: DataListCls, usrTag: str = "",  # noqa: N802,N803
                        persId: int = 0) -> Response:  # noqa: N803
        raise NotImplementedError("wrapperOnceExec is not implemented")

    def wrapperError(self, ret: int) -> str:  # noqa: N802
        return ""

    def wrapperLoadRes(self, reqData: DataListCls, resId: int) -> int:  # noqa: N802,N803
        return 0

    def wrapperUnloadRes(self, resId: int) -> int:  # noqa: N802,N803
        return 0

    def wrapperCreate(self, params: dict[str, str], sid: str, persId: int = 0,  # noqa: N802,N803
                      usrTag: str = "") -> SessionCreateResponse:  # noqa: N803
        raise NotImplementedError("wrapperCreate is not implemented: this wrapper serves one-shot calls only")

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:  # noqa: N802,N803
        raise NotImplementedError("wrapperWrite is not implemented")

    def wrapperRead(self, handle: str) -> Response:  # noqa: N802
        raise NotImplementedError("wrapperRead is not implemented")

    def wrapperDestroy(self, handle: str) -> int:  # noqa: N802
        return 0
