import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usdcarb.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_BACKTEST_SUCCEEDED: _ClassVar[EventType]
    EVENT_TYPE_BACKTEST_FAILED: _ClassVar[EventType]
    EVENT_TYPE_SWEEP_FINISHED: _ClassVar[EventType]
    EVENT_TYPE_INGESTION_SUCCEEDED: _ClassVar[EventType]
    EVENT_TYPE_INGESTION_FAILED: _ClassVar[EventType]
    EVENT_TYPE_GAP_DETECTED: _ClassVar[EventType]
    EVENT_TYPE_DATA_ISSUE: _ClassVar[EventType]
    EVENT_TYPE_DEPLOYMENT_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_VERSION_STATE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_TEST: _ClassVar[EventType]
    EVENT_TYPE_SERIES_VERDICT_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_DATA_QUALITY_DIGEST: _ClassVar[EventType]
    EVENT_TYPE_ALERT_FIRING: _ClassVar[EventType]
    EVENT_TYPE_ALERT_RESOLVED: _ClassVar[EventType]
    EVENT_TYPE_DEPLOYMENT_DIVERGED: _ClassVar[EventType]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DEAD_LETTERED: _ClassVar[DeliveryState]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_BACKTEST_SUCCEEDED: EventType
EVENT_TYPE_BACKTEST_FAILED: EventType
EVENT_TYPE_SWEEP_FINISHED: EventType
EVENT_TYPE_INGESTION_SUCCEEDED: EventType
EVENT_TYPE_INGESTION_FAILED: EventType
EVENT_TYPE_GAP_DETECTED: EventType
EVENT_TYPE_DATA_ISSUE: EventType
EVENT_TYPE_DEPLOYMENT_CHANGED: EventType
EVENT_TYPE_VERSION_STATE_CHANGED: EventType
EVENT_TYPE_TEST: EventType
EVENT_TYPE_SERIES_VERDICT_CHANGED: EventType
EVENT_TYPE_DATA_QUALITY_DIGEST: EventType
EVENT_TYPE_ALERT_FIRING: EventType
EVENT_TYPE_ALERT_RESOLVED: EventType
EVENT_TYPE_DEPLOYMENT_DIVERGED: EventType
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_DEAD_LETTERED: DeliveryState

class Event(_message.Message):
    __slots__ = ("id", "type", "time", "source", "subject", "severity", "summary", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: EventType
    time: _timestamp_pb2.Timestamp
    source: str
    subject: str
    severity: _common_pb2.Severity
    summary: str
    data: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., subject: _Optional[str] = ..., severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., summary: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class WebhookConfig(_message.Message):
    __slots__ = ("url", "secret", "headers", "max_attempts")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    url: str
    secret: str
    headers: _containers.ScalarMap[str, str]
    max_attempts: int
    def __init__(self, url: _Optional[str] = ..., secret: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class EmailConfig(_message.Message):
    __slots__ = ("to", "subject_prefix")
    TO_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    to: _containers.RepeatedScalarFieldContainer[str]
    subject_prefix: str
    def __init__(self, to: _Optional[_Iterable[str]] = ..., subject_prefix: _Optional[str] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("name", "display_name", "webhook", "email", "has_secret", "owner", "create_time", "previous_secret_expire_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    HAS_SECRET_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    webhook: WebhookConfig
    email: EmailConfig
    has_secret: bool
    owner: str
    create_time: _timestamp_pb2.Timestamp
    previous_secret_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., webhook: _Optional[_Union[WebhookConfig, _Mapping]] = ..., email: _Optional[_Union[EmailConfig, _Mapping]] = ..., has_secret: _Optional[bool] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_secret_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("name", "channel", "event_types", "min_severity", "subject_prefix", "enabled", "owner", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    channel: str
    event_types: _containers.RepeatedScalarFieldContainer[EventType]
    min_severity: _common_pb2.Severity
    subject_prefix: str
    enabled: bool
    owner: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., channel: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[EventType, str]]] = ..., min_severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., subject_prefix: _Optional[str] = ..., enabled: _Optional[bool] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("name", "event", "subscription", "state", "attempts", "response_code", "last_error", "create_time", "end_time", "next_attempt_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    event: Event
    subscription: str
    state: DeliveryState
    attempts: int
    response_code: int
    last_error: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., subscription: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., attempts: _Optional[int] = ..., response_code: _Optional[int] = ..., last_error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateChannelRequest(_message.Message):
    __slots__ = ("channel", "request_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    request_id: str
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetChannelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListChannelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels", "next_page_token")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    next_page_token: str
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateChannelRequest(_message.Message):
    __slots__ = ("channel", "update_mask")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteChannelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TestChannelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription", "request_id")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    request_id: str
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "channel")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    channel: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "next_page_token")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    next_page_token: str
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription", "update_mask")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("parent", "state", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    state: DeliveryState
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubscribeEventsRequest(_message.Message):
    __slots__ = ("event_types", "min_severity", "after_id", "subject_prefix")
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedScalarFieldContainer[EventType]
    min_severity: _common_pb2.Severity
    after_id: str
    subject_prefix: str
    def __init__(self, event_types: _Optional[_Iterable[_Union[EventType, str]]] = ..., min_severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., after_id: _Optional[str] = ..., subject_prefix: _Optional[str] = ...) -> None: ...

class RedeliverDeliveriesRequest(_message.Message):
    __slots__ = ("parent", "delivery")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    delivery: str
    def __init__(self, parent: _Optional[str] = ..., delivery: _Optional[str] = ...) -> None: ...

class RedeliverDeliveriesResponse(_message.Message):
    __slots__ = ("redelivered_count", "deliveries")
    REDELIVERED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    redelivered_count: int
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, redelivered_count: _Optional[int] = ..., deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class RotateWebhookSecretRequest(_message.Message):
    __slots__ = ("name", "secret", "overlap")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    name: str
    secret: str
    overlap: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., secret: _Optional[str] = ..., overlap: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SubscribeEventsResponse(_message.Message):
    __slots__ = ("event", "heartbeat_time", "outcome")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    event: Event
    heartbeat_time: _timestamp_pb2.Timestamp
    outcome: _common_pb2.Outcome
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ...) -> None: ...
