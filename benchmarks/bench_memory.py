"""Peak memory (6): resident set of one training run (a child process), and the summed
resident set of every process of a study (driver + Ray's processes) sampled while it runs."""
from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import threading
import time


def training_run_peak_rss(variant: str = "cloce_d", k: int = 16) -> dict:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "cloce", "train", "--variant", variant, "--k", str(k), "--epochs", "1",
                        "--kshot-val", "--test-sample", "300", "--output-dir", out, "--no-progress"],
                       check=True, capture_output=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"variant": variant, "k": k, "peak_rss_mib": peak_kib / 1024}


class TreeMemorySampler:
    """Sums the RSS of this process and all Ray processes of this machine every `interval` s."""

    RAY_MARKERS = ("ray::", "raylet", "gcs_server", "default_worker", "dashboard", "log_monitor", "runtime_env")

    def __init__(self, interval: float = 1.0):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        import os

        import psutil

        me = os.getpid()
        while not self._stop.is_set():
            total = 0
            for process in psutil.process_iter(["pid", "cmdline", "memory_info"]):
                try:
                    command = " ".join(process.info["cmdline"] or [])
                    if process.info["pid"] == me or any(m in command for m in self.RAY_MARKERS):
                        total += process.info["memory_info"].rss
                except (psutil.Error, TypeError):
                    continue
            self.peak = max(self.peak, total)
            time.sleep(self.interval)
