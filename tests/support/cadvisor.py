"""A stand-in for the kubelet's cAdvisor metrics: container CPU and memory of local process groups.

The dashboard's CPU and memory panels query cAdvisor's series (container_cpu_usage_seconds_total,
container_memory_working_set_bytes with namespace, pod and container labels), which a kubelet
serves; none runs here. This exporter serves the same names and labels, measured from /proc for
the process group each container was started as, so those panels are checked against real
numbers of the real processes.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class ContainerCollector:
    """Yields one CPU counter and one working-set gauge per (namespace, pod, container) -> process group."""

    def __init__(self, containers: dict[tuple[str, str, str], int]):
        self.containers = containers

    def collect(self):
        labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "CPU time of the container's processes", labels=labels)
        memory = GaugeMetricFamily("container_memory_working_set_bytes", "resident memory of the container's processes",
                                   labels=labels)
        for key, group in self.containers.items():
            seconds, resident = _group_usage(group)
            cpu.add_metric(list(key), seconds)
            memory.add_metric(list(key), resident)
        yield cpu
        yield memory


def serve(containers: dict[tuple[str, str, str], int], port: int):
    """Start the exporter on 127.0.0.1:port; returns the server (call .shutdown() to stop it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ContainerCollector(containers))
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server


def _group_usage(group: int) -> tuple[float, int]:
    seconds, resident = 0.0, 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:  # fields after the command: state, ppid, pgrp, ... utime (12), stime (13), rss (22)
            seconds += (int(fields[11]) + int(fields[12])) / TICKS
            resident += int(fields[21]) * PAGE
    return seconds, resident
