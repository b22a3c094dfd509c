"""The JSON record a throughput benchmark writes: its command, device, versions, settings, rows.

:func:`device_info` describes the first JAX device, the package versions and the machine load;
:func:`write_record` puts the command line, that description and the benchmark's own fields into
one JSON file (``benchmarks/results/*.json``) and says where it went.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def device_info() -> dict[str, Any]:
    """The device, the jax/jaxlib/Python versions, the XLA flags and the machine load."""
    import jax
    import jaxlib

    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": len(jax.devices()),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": list(os.getloadavg()),
    }


def write_record(
    out: str | os.PathLike,
    benchmark: str,
    settings: dict[str, Any],
    note: str,
    rows: list[dict],
    **extra: Any,
) -> dict[str, Any]:
    """Write ``{benchmark, command, device, settings, note, rows, **extra}`` to ``out`` (JSON,
    parent folders created) and return it."""
    record = {
        "benchmark": benchmark,
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": device_info(),
        "settings": settings,
        "note": note,
        "rows": rows,
        **extra,
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return record
