"""Run by test_gcs_polling.py in a process of its own: a Ray driver on its own local Ray, whose GCS is then
SIGKILLed. Prints, as JSON, the CPU seconds the driver's two GCS-following threads took in WINDOW seconds
with the GCS up and then down. With `--patient`, gateway.gcs_polling is installed first, as the gateway
does."""

import json
import os
import sys
import threading
import time

import ray
from ray._private import ray_constants
from ray._private import worker as ray_worker

from gateway import gcs_polling

THREADS = ("ray_listen_error_messages", "ray_print_logs")
WINDOW = 3.0


def threads_cpu() -> float:
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        for t in threading.enumerate()
        if t.name in THREADS and t.ident is not None
    )


def cpu_over_window() -> float:
    start = threads_cpu()
    time.sleep(WINDOW)
    return threads_cpu() - start


def main() -> None:
    if "--patient" in sys.argv:
        gcs_polling.install()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=True, _node_ip_address="127.0.0.1")
    node = ray_worker._global_node
    driver = ray_worker.global_worker
    subscribers = (driver.gcs_error_subscriber, driver.gcs_log_subscriber)
    report = {
        "threads": sorted(t.name for t in threading.enumerate() if t.name in THREADS),
        "patient": [isinstance(s, gcs_polling.PatientSubscriber) for s in subscribers],
        "gcs_up": cpu_over_window(),
    }
    gcs = node.all_processes[ray_constants.PROCESS_TYPE_GCS_SERVER][0].process
    gcs.kill()
    gcs.wait()
    report["gcs_down"] = cpu_over_window()
    print(json.dumps(report), flush=True)
    for infos in node.all_processes.values():  # no ray.shutdown: it would wait for the dead GCS
        for info in infos:
            info.process.kill()
    os._exit(0)  # nor the ray.shutdown at exit


if __name__ == "__main__":
    main()
