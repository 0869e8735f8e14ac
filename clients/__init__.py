"""Clients of the rfdetr_seg ensemble: frame transports (gRPC, system or CUDA shared memory),
in-order streaming with requests in flight, waiting for (and reconnecting to) the server,
response decoding, drawing, server statistics, the video CLI (clients.stream_video: with
clients.video, clients.outputs, clients.signals and clients.runner), the many-streams CLI
(clients.streams: with clients.sources, clients.drop_policy and clients.status) and an optional
supervision adapter (clients.supervision_adapter)."""

from clients.annotate import annotate, class_colour
from clients.reconnect import Reconnect, ServerUnavailable, wait_until_ready
from clients.results import error_record, result_from_response, to_json_record
from clients.server_stats import StageStats, format_table, read_counters, stats_since
from clients.stream import FrameOutcome, stream_frames
from clients.transports import (
    TRANSPORT_KINDS,
    CudaShmTransport,
    PlainGrpcTransport,
    SystemShmTransport,
    Transport,
    TransportUnavailable,
    make_transport,
)

__all__ = [
    "TRANSPORT_KINDS",
    "CudaShmTransport",
    "FrameOutcome",
    "PlainGrpcTransport",
    "Reconnect",
    "ServerUnavailable",
    "StageStats",
    "SystemShmTransport",
    "Transport",
    "TransportUnavailable",
    "annotate",
    "class_colour",
    "error_record",
    "format_table",
    "make_transport",
    "read_counters",
    "result_from_response",
    "stats_since",
    "stream_frames",
    "to_json_record",
    "wait_until_ready",
]
