"""The GPU sampler's logic against a fake NVML module; the real one runs on the GPU machine."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest

from grpo_host.observability.gpu import GIB, GpuSampler


class NVMLError(Exception):
    pass


class FakeNVML:
    """Just the NVML calls the sampler makes; readings come from per-device scripts."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices=2, *, init_error=None, no_power=()):
        self.count = devices
        self.init_error = init_error
        self.no_power = set(no_power)
        self.util = {i: [50.0] for i in range(devices)}  # each read pops the next value (last one sticks)
        self.mem_used = {i: 10 * GIB for i in range(devices)}
        self.calls = {"init": 0, "shutdown": 0, "power": 0}

    def nvmlInit(self):
        self.calls["init"] += 1
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls["shutdown"] += 1

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"Fake H200"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h}aaaa"

    def nvmlDeviceGetUtilizationRates(self, h):
        values = self.util[h]
        return SimpleNamespace(gpu=values.pop(0) if len(values) > 1 else values[0])

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=self.mem_used[h], total=140 * GIB)

    def nvmlDeviceGetPowerUsage(self, h):
        self.calls["power"] += 1
        if h in self.no_power:
            raise NVMLError("Not Supported")
        return 300_000  # mW

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 40 + h


def test_summary_is_mean_and_max_since_last_step_and_resets():
    nvml = FakeNVML(devices=2)
    nvml.util[0] = [10.0, 30.0, 80.0, 80.0]
    sampler = GpuSampler(3600, nvml=nvml).start()  # the thread never fires: we sample by hand
    try:
        assert sampler.active and [d["name"] for d in sampler.devices] == ["Fake H200", "Fake H200"]
        sampler.sample()  # start() took the first reading (10), this one 30
        first = sampler.summary()
        assert first["gpu/0/utilization/mean"] == pytest.approx(20.0)
        assert first["gpu/0/utilization/max"] == pytest.approx(30.0)
        assert first["gpu/1/utilization/mean"] == pytest.approx(50.0)
        assert first["gpu/0/memory_used_gib/max"] == pytest.approx(10.0)
        assert first["gpu/0/power_w/mean"] == pytest.approx(300.0)
        assert first["gpu/1/temperature_c/max"] == pytest.approx(41.0)
        # The next window sees only what came after: 80, not the 10 and 30 before.
        nvml.mem_used[0] = 12 * GIB
        sampler.sample()
        second = sampler.summary()
        assert second["gpu/0/utilization/mean"] == pytest.approx(80.0)
        assert second["gpu/0/memory_used_gib/mean"] == pytest.approx(12.0)
        # A step shorter than the interval still gets a reading, taken at summary time.
        assert sampler.summary()["gpu/0/utilization/mean"] == pytest.approx(80.0)
    finally:
        sampler.stop()
    assert nvml.calls["shutdown"] == 1
    assert sampler.summary() == {}


def test_background_thread_samples_on_its_interval():
    nvml = FakeNVML(devices=1)
    nvml.util[0] = [float(v) for v in range(1, 200)]
    with GpuSampler(0.01, nvml=nvml) as sampler:
        time.sleep(0.3)
        metrics = sampler.summary()
    # Several readings were averaged: the max ran ahead of the mean.
    assert metrics["gpu/0/utilization/max"] > metrics["gpu/0/utilization/mean"] > 1.0


def test_unsupported_reading_is_dropped_for_that_device_only():
    nvml = FakeNVML(devices=2, no_power={1})
    sampler = GpuSampler(3600, nvml=nvml).start()
    try:
        for _ in range(3):
            sampler.sample()
        metrics = sampler.summary()
    finally:
        sampler.stop()
    assert "gpu/0/power_w/mean" in metrics and "gpu/1/power_w/mean" not in metrics
    assert "gpu/1/utilization/mean" in metrics
    # Device 0 was asked every time (4 readings); device 1 once, then never again.
    assert nvml.calls["power"] == 4 + 1


def test_no_driver_logs_one_line_and_does_nothing(caplog):
    nvml = FakeNVML(init_error=NVMLError("Driver Not Loaded"))
    with caplog.at_level(logging.INFO, logger="grpo_host.observability.gpu"):
        sampler = GpuSampler(0.01, nvml=nvml).start()
        sampler.sample()
        assert sampler.summary() == {}
        sampler.stop()
    assert not sampler.active and sampler._thread is None
    assert [r.getMessage() for r in caplog.records] == ["GPU metrics off: Driver Not Loaded"]
    assert nvml.calls["shutdown"] == 0


def test_missing_library_says_what_to_install(monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    with caplog.at_level(logging.INFO, logger="grpo_host.observability.gpu"):
        sampler = GpuSampler().start()
    assert not sampler.active
    assert len(caplog.records) == 1 and "grpo-host[gpu]" in caplog.records[0].getMessage()


def test_cuda_visible_devices_picks_the_devices(monkeypatch):
    nvml = FakeNVML(devices=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-0aa")
    sampler = GpuSampler(3600, nvml=nvml).start()
    try:
        keys = sampler.summary()
    finally:
        sampler.stop()
    assert {k.split("/")[1] for k in keys} == {"2", "0"}


def test_report_draws_gpu_charts_only_when_the_run_had_gpus():
    pytest.importorskip("matplotlib")
    from grpo_host.observability.report import ReportInput, section_gpu

    nvml = FakeNVML(devices=2)
    records = []
    with GpuSampler(3600, nvml=nvml) as sampler:
        for step in range(1, 4):
            nvml.mem_used[1] = (20 + step) * GIB
            records.append({"step": step, "reward": 0.1, **sampler.summary()})
    html = section_gpu(ReportInput(records))
    assert "<h2>GPUs</h2>" in html and "data:image/png;base64," in html
    assert "<th>0</th>" in html and "<th>1</th>" in html and "<td>23.0</td>" in html  # GPU 1's peak memory
    assert section_gpu(ReportInput([{"step": 1, "reward": 0.1}])) is None
