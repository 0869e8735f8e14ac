"""clients.server_stats: a run's "before" reading waits for counters still landing."""

from __future__ import annotations

from types import SimpleNamespace

from clients.server_stats import read_settled_counters


class LandingCountersClient:
    """A client stand-in (test fake) whose model counts one more success on each of its first
    `landing` statistics calls, as a server does while an earlier request's update lands."""

    def __init__(self, landing: int):
        self.calls = 0
        self.landing = landing

    def get_inference_statistics(self, model, client_timeout=None):
        self.calls += 1
        count = min(self.calls, self.landing)
        stats = SimpleNamespace(
            success=SimpleNamespace(count=count),
            **{name: SimpleNamespace(ns=0) for name in ("queue", "compute_input", "compute_infer", "compute_output")},
        )
        version = SimpleNamespace(inference_count=count, execution_count=count, inference_stats=stats)
        return SimpleNamespace(model_stats=[version])


def test_the_before_reading_waits_until_two_readings_agree():
    client = LandingCountersClient(landing=3)
    counters = read_settled_counters(client, ("m",), quiet_s=0.0, timeout_s=5.0)
    assert counters["m"].requests == 3
    assert client.calls == 4  # 1, 2, 3, then 3 again


def test_counters_that_never_settle_are_read_once_the_time_is_up():
    client = LandingCountersClient(landing=10**9)
    counters = read_settled_counters(client, ("m",), quiet_s=0.01, timeout_s=0.05)
    assert counters["m"].requests == client.calls
