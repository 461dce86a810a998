from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("t", "h", "sess")
    class SessEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    T_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    SESS_FIELD_NUMBER: _ClassVar[int]
    t: str
    h: str
    sess: _containers.ScalarMap[str, str]
    def __init__(self, t: _Optional[str] = ..., h: _Optional[str] = ..., sess: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DataMeta(_message.Message):
    __slots__ = ("data", "desc")
    class DescEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    DESC_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    desc: _containers.ScalarMap[str, str]
    def __init__(self, data: _Optional[bytes] = ..., desc: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReqData(_message.Message):
    __slots__ = ("op", "s", "param", "data")
    class ParamEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OP_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    op: str
    s: Session
    param: _containers.ScalarMap[str, str]
    data: _containers.RepeatedCompositeFieldContainer[DataMeta]
    def __init__(self, op: _Optional[str] = ..., s: _Optional[_Union[Session, _Mapping]] = ..., param: _Optional[_Mapping[str, str]] = ..., data: _Optional[_Iterable[_Union[DataMeta, _Mapping]]] = ...) -> None: ...

class ResData(_message.Message):
    __slots__ = ("code", "error_info", "s", "param", "data")
    class ParamEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_INFO_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    error_info: str
    s: Session
    param: _containers.ScalarMap[str, str]
    data: _containers.RepeatedCompositeFieldContainer[DataMeta]
    def __init__(self, code: _Optional[int] = ..., error_info: _Optional[str] = ..., s: _Optional[_Union[Session, _Mapping]] = ..., param: _Optional[_Mapping[str, str]] = ..., data: _Optional[_Iterable[_Union[DataMeta, _Mapping]]] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("query", "headers", "body")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    query: str
    headers: str
    body: str
    def __init__(self, query: _Optional[str] = ..., headers: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("headers", "body")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    headers: str
    body: str
    def __init__(self, headers: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...
