"""bench/scale.py's RSS sampler: the peak of a process's tree while it runs."""

from __future__ import annotations

import os
import time

from bench.scale import RssSampler
from bench.stack import tree_rss_mb


def test_the_sampler_samples_until_stopped_and_reports_the_peak() -> None:
    with RssSampler(os.getpid(), interval=0.01) as sampler:
        time.sleep(0.2)
    n = len(sampler.samples)
    time.sleep(0.05)
    assert len(sampler.samples) == n >= 2  # stopped: nothing added after the block
    report = sampler.report("me")
    assert report["me_samples"] == n
    assert report["me_max_mb"] == max(sampler.samples)
    assert 0 < report["me_median_mb"] <= report["me_max_mb"]
    assert abs(report["me_max_mb"] - tree_rss_mb(os.getpid())) < 200


def test_a_gone_process_reports_no_figure() -> None:
    gone = 2**22 + 1  # above the kernel's pid_max: no such process
    with RssSampler(gone, interval=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.report("x") == {"x_max_mb": None, "x_median_mb": None, "x_samples": 0}
