from aiges.protocol import v2_pb2 as _v2_pb2
from aiges.protocol import xsf_pb2 as _xsf_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class XsfDataMeta(_message.Message):
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
    data: _v2_pb2.LoaderOutput
    desc: _containers.ScalarMap[str, str]
    def __init__(self, data: _Optional[_Union[_v2_pb2.LoaderOutput, _Mapping]] = ..., desc: _Optional[_Mapping[str, str]] = ...) -> None: ...

class XsfReply(_message.Message):
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
    s: _xsf_pb2.Session
    param: _containers.ScalarMap[str, str]
    data: _containers.RepeatedCompositeFieldContainer[XsfDataMeta]
    def __init__(self, code: _Optional[int] = ..., error_info: _Optional[str] = ..., s: _Optional[_Union[_xsf_pb2.Session, _Mapping]] = ..., param: _Optional[_Mapping[str, str]] = ..., data: _Optional[_Iterable[_Union[XsfDataMeta, _Mapping]]] = ...) -> None: ...
