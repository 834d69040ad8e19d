"""Measurement windows: server CPU (process tree), the generator's own CPU, PSS."""

import asyncio
import os
import resource
from dataclasses import dataclass

from bench.proc import TreeCpu, tree_pss_mb


def own_cpu_seconds() -> float:
    """user+sys of this process (all its threads: the SDK's Rust/libwebrtc threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Window:
    seconds: float
    server_cpu_s: float
    generator_cpu_s: float
    server_cpu_by_process: dict[str, float]
    loadavg: tuple[float, float, float]


async def measure_window(server_pid: int, seconds: float) -> Window:
    """Sleep `seconds` (sampling the server's process tree every second) and return the CPU spent."""
    cpu = TreeCpu(server_pid)
    cpu.start()
    own0 = own_cpu_seconds()
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    while (now := loop.time()) < end:
        await asyncio.sleep(min(1.0, end - now))
        cpu.sample()
    elapsed = loop.time() - start
    return Window(
        seconds=elapsed,
        server_cpu_s=cpu.seconds(),
        generator_cpu_s=own_cpu_seconds() - own0,
        server_cpu_by_process=cpu.by_name(),
        loadavg=os.getloadavg(),
    )


async def server_pss_mb(server_pid: int) -> float:
    return await asyncio.to_thread(tree_pss_mb, server_pid)
