"""Runs these cases on 8 simulated CPU devices.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before JAX creates its CPU
backend; this conftest sets it when the file is collected in a fresh process (the default
suite runs it through ``tests/test_sharding.py``, in a subprocess). Run it directly with
``python -m pytest -q tests/multidevice/sharded_cases.py``.
"""

import os

FLAG = "--xla_force_host_platform_device_count=8"
if FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
