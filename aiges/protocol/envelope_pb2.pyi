from aiges.protocol import v2_pb2 as _v2_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class XsfDataMeta(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _v2_pb2.LoaderOutput
    def __init__(self, data: _Optional[_Union[_v2_pb2.LoaderOutput, _Mapping]] = ...) -> None: ...

class XsfReplyData(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[XsfDataMeta]
    def __init__(self, data: _Optional[_Iterable[_Union[XsfDataMeta, _Mapping]]] = ...) -> None: ...
