"""Test-session settings shared by every test module.

* JAX runs on the CPU (CI has no accelerator).
* A persistent compilation cache for the session: several tests build the same programs (the
  same scenario and network sizes) in new objects; the cache turns their second compilation
  into a lookup. It lives in a temporary directory, so nothing leaks between sessions.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

_CACHE = tempfile.mkdtemp(prefix="espark-test-jaxcache-")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# baseline results cached by a run (espark_jax.baselines) go to a per-session directory too
os.environ.setdefault("ESPARK_CACHE_DIR", tempfile.mkdtemp(prefix="espark-test-cache-"))
