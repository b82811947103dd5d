"""GPU metrics: per-device utilization, memory, power and temperature, sampled through NVML.

A :class:`GpuSampler` reads every visible NVIDIA device on an interval in a background thread
and, once per logged training step, summarizes what it saw since the previous step (mean and
max of each reading) as flat metrics (``gpu/0/utilization/mean``, ``gpu/0/memory_used_gib/max``,
...) that join the step's metrics in ``metrics.jsonl`` and the trackers. On a machine without
an NVIDIA driver (or without ``nvidia-ml-py``) it logs one line and does nothing else.

It lives in the host rather than in a plugin: the training worker starts it on every run, it
has no settings a user would swap for another implementation, and its only dependency,
``nvidia-ml-py`` (the ``grpo-host[gpu]`` extra), is imported when the sampler starts.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

GIB = 1024**3

# The readings, named with their units as they appear in metric names.
READINGS = ("utilization", "memory_used_gib", "power_w", "temperature_c")


class GpuSampler:
    """Sample NVML readings in a background thread; ``summary()`` once per logged step.

    ``nvml`` is the NVML module to use (tests inject a fake one); by default ``pynvml`` from
    ``nvidia-ml-py`` is imported on :meth:`start`.
    """

    def __init__(self, interval: float = 1.0, *, nvml: Any = None, devices: Sequence[int] | None = None):
        if not interval > 0:
            raise ValueError(f"GPU sampling interval must be a positive number of seconds, not {interval}")
        self.interval = float(interval)
        self._nvml = nvml
        self._wanted = None if devices is None else list(devices)
        self._handles: dict[int, Any] = {}  # NVML index -> handle
        self._unsupported: set[tuple[int, str]] = set()
        self._acc: dict[tuple[int, str], list[float]] = {}  # (device, reading) -> [sum, max, count]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.devices: list[dict[str, Any]] = []  # name, memory total: for the log and the report
        self.active = False
        self.reason = ""  # why the sampler is off, when it is

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> GpuSampler:
        """Open NVML and start sampling; on any failure log one line and stay off."""
        if self.active:
            return self
        try:
            nvml = self._nvml if self._nvml is not None else _import_pynvml()
            nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - no driver, no library, no permission: all the same to us
            self.reason = _short_error(exc)
            log.info("GPU metrics off: %s", self.reason)
            return self
        self._nvml = nvml
        try:
            indices = self._wanted if self._wanted is not None else _visible_indices(nvml)
            for index in indices:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                self._handles[index] = handle
                self.devices.append({"index": index, **_describe(nvml, handle)})
        except Exception as exc:  # noqa: BLE001
            self.reason = _short_error(exc)
            log.info("GPU metrics off: %s", self.reason)
            self._shutdown_nvml()
            return self
        if not self._handles:
            self.reason = "NVML found no GPU"
            log.info("GPU metrics off: %s", self.reason)
            self._shutdown_nvml()
            return self
        self.active = True
        self.sample()  # a first reading now, so even a very short first step has data
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="grpo-host-gpu-sampler", daemon=True)
        self._thread.start()
        names = ", ".join(f"{d['index']}: {d['name']}" for d in self.devices)
        log.info("GPU metrics on: sampling %d device(s) every %.2gs (%s)", len(self._handles), self.interval, names)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval))
            self._thread = None
        if self.active:
            self._shutdown_nvml()
            self.active = False

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sampling ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one reading of every device (the thread calls this; tests call it directly)."""
        if not self.active:
            return
        readings = []
        for index, handle in self._handles.items():
            for reading in READINGS:
                if (index, reading) in self._unsupported:
                    continue
                try:
                    value = _read(self._nvml, handle, reading)
                except Exception:  # noqa: BLE001 - e.g. power not supported on this board
                    # A reading a device cannot give is dropped for the rest of the run.
                    self._unsupported.add((index, reading))
                    continue
                readings.append(((index, reading), value))
        with self._lock:
            for key, value in readings:
                acc = self._acc.get(key)
                if acc is None:
                    self._acc[key] = [value, value, 1]
                else:
                    acc[0] += value
                    acc[1] = max(acc[1], value)
                    acc[2] += 1

    def summary(self) -> dict[str, float]:
        """Mean and max of each reading since the last call, as flat metrics; resets the window."""
        if not self.active:
            return {}
        with self._lock:
            empty = not self._acc
        if empty:  # the step was shorter than the interval: read once now
            self.sample()
        with self._lock:
            acc, self._acc = self._acc, {}
        metrics: dict[str, float] = {}
        for (index, reading), (total, peak, count) in sorted(acc.items()):
            metrics[f"gpu/{index}/{reading}/mean"] = round(total / count, 3)
            metrics[f"gpu/{index}/{reading}/max"] = round(peak, 3)
        return metrics

    def _shutdown_nvml(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down is best effort
            pass


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise RuntimeError("nvidia-ml-py is not installed (pip install 'grpo-host[gpu]')") from None
    return pynvml


def _visible_indices(nvml: Any) -> list[int]:
    """NVML indices of the devices this process may use: CUDA_VISIBLE_DEVICES when set."""
    count = int(nvml.nvmlDeviceGetCount())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return list(range(count))
    indices: list[int] = []
    uuids: dict[str, int] | None = None
    for item in (v.strip() for v in visible.split(",")):
        if not item:
            continue
        if item.isdigit() or (item.startswith("-") and item[1:].isdigit()):
            index = int(item)
            if index < 0:  # CUDA stops at the first invalid entry
                break
            if index < count:
                indices.append(index)
            continue
        if uuids is None:  # GPU-xxxx / MIG-xxxx form: match by UUID prefix
            uuids = {}
            for i in range(count):
                uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))
                uuids[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = i
        match = [i for u, i in uuids.items() if u.startswith(item)]
        if match:
            indices.append(match[0])
    return indices


def _describe(nvml: Any, handle: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        name = nvml.nvmlDeviceGetName(handle)
        info["name"] = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001
        info["name"] = "unknown"
    try:
        info["memory_total_gib"] = round(nvml.nvmlDeviceGetMemoryInfo(handle).total / GIB, 2)
    except Exception:  # noqa: BLE001
        pass
    return info


def _read(nvml: Any, handle: Any, reading: str) -> float:
    if reading == "utilization":
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)  # percent of time a kernel ran
    if reading == "memory_used_gib":
        return nvml.nvmlDeviceGetMemoryInfo(handle).used / GIB
    if reading == "power_w":
        return nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # NVML reports milliwatts
    if reading == "temperature_c":
        return float(nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)))
    raise KeyError(reading)


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__.startswith("NVMLError") and "driver" not in text.lower():
        text = f"{text} (no NVIDIA driver?)"
    return text
