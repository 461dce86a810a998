from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetaDesc(_message.Message):
    __slots__ = ("name", "dataType", "attribute")
    class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TEXT: _ClassVar[MetaDesc.DataType]
        AUDIO: _ClassVar[MetaDesc.DataType]
        IMAGE: _ClassVar[MetaDesc.DataType]
        VIDEO: _ClassVar[MetaDesc.DataType]
        OTHER: _ClassVar[MetaDesc.DataType]
    TEXT: MetaDesc.DataType
    AUDIO: MetaDesc.DataType
    IMAGE: MetaDesc.DataType
    VIDEO: MetaDesc.DataType
    OTHER: MetaDesc.DataType
    class AttributeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataType: MetaDesc.DataType
    attribute: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., dataType: _Optional[_Union[MetaDesc.DataType, str]] = ..., attribute: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("meta", "data")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    meta: MetaDesc
    data: bytes
    def __init__(self, meta: _Optional[_Union[MetaDesc, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class LoaderInput(_message.Message):
    __slots__ = ("serviceId", "serviceName", "state", "headers", "params", "expect", "pl", "sync_id")
    class SessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STREAM: _ClassVar[LoaderInput.SessState]
        ONCE: _ClassVar[LoaderInput.SessState]
    STREAM: LoaderInput.SessState
    ONCE: LoaderInput.SessState
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICEID_FIELD_NUMBER: _ClassVar[int]
    SERVICENAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    PL_FIELD_NUMBER: _ClassVar[int]
    SYNC_ID_FIELD_NUMBER: _ClassVar[int]
    serviceId: str
    serviceName: str
    state: LoaderInput.SessState
    headers: _containers.ScalarMap[str, str]
    params: _containers.ScalarMap[str, str]
    expect: _containers.RepeatedCompositeFieldContainer[MetaDesc]
    pl: _containers.RepeatedCompositeFieldContainer[Payload]
    sync_id: int
    def __init__(self, serviceId: _Optional[str] = ..., serviceName: _Optional[str] = ..., state: _Optional[_Union[LoaderInput.SessState, str]] = ..., headers: _Optional[_Mapping[str, str]] = ..., params: _Optional[_Mapping[str, str]] = ..., expect: _Optional[_Iterable[_Union[MetaDesc, _Mapping]]] = ..., pl: _Optional[_Iterable[_Union[Payload, _Mapping]]] = ..., sync_id: _Optional[int] = ...) -> None: ...

class LoaderOutput(_message.Message):
    __slots__ = ("serviceId", "code", "err", "status", "pl")
    class RespStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BEGIN: _ClassVar[LoaderOutput.RespStatus]
        CONTINUE: _ClassVar[LoaderOutput.RespStatus]
        END: _ClassVar[LoaderOutput.RespStatus]
        ONCE: _ClassVar[LoaderOutput.RespStatus]
    BEGIN: LoaderOutput.RespStatus
    CONTINUE: LoaderOutput.RespStatus
    END: LoaderOutput.RespStatus
    ONCE: LoaderOutput.RespStatus
    SERVICEID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PL_FIELD_NUMBER: _ClassVar[int]
    serviceId: str
    code: int
    err: str
    status: LoaderOutput.RespStatus
    pl: _containers.RepeatedCompositeFieldContainer[Payload]
    def __init__(self, serviceId: _Optional[str] = ..., code: _Optional[int] = ..., err: _Optional[str] = ..., status: _Optional[_Union[LoaderOutput.RespStatus, str]] = ..., pl: _Optional[_Iterable[_Union[Payload, _Mapping]]] = ...) -> None: ...
