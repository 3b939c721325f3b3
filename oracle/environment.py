"""The environment a value is made in: every library a loss or a solver's path depends on, the
machine, the BLAS doing the arithmetic and the settings that steer it.

Recorded with every table row (`oracle.table`) and every run (`bench.runner`) as metadata, never
hashed into a fingerprint. Versions are read from package metadata, so nothing is imported for
them; torch's BLAS is described only when torch is already loaded."""

import os
import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import h5py
import numpy
from threadpoolctl import threadpool_info

# Distribution names: what computes losses (torch, transformers, tokenizers), what solvers and
# the surrogate compute with (numpy … highspy), and what stores values (h5py).
LIBRARIES = (
    "torch", "transformers", "tokenizers", "numpy", "scipy", "scikit-learn", "botorch", "gpytorch",
    "pyomo", "highspy", "h5py", "depthbench",
)
# Settings that change thread counts or the kernels (hence summation order) of BLAS and OpenMP.
NUMERIC_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                     "OPENBLAS_NUM_THREADS")


def current_environment(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions (None where not installed), machine, BLAS and numeric settings of this process,
    merged with what the caller knows (e.g. the device). Plain JSON data."""
    environment: dict[str, Any] = {
        "python": platform.python_version(),
        **{library: installed_version(library) for library in LIBRARIES},
        "hdf5": h5py.version.hdf5_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "blas": blas(),
        "numeric_variables": {name: os.environ[name] for name in NUMERIC_VARIABLES if name in os.environ},
    }
    environment.update(extra or {})
    return environment


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def blas() -> dict[str, Any]:
    """numpy's BLAS and LAPACK as built, the BLAS and OpenMP libraries loaded now (threadpoolctl:
    implementation, version, CPU kernels, threads) and, if torch is loaded, torch's."""
    built = numpy.show_config(mode="dicts")
    dependencies = built.get("Build Dependencies", {})
    loaded = [
        {key: library.get(key) for key in ("user_api", "internal_api", "prefix", "version", "architecture",
                                            "threading_layer", "num_threads")}
        for library in threadpool_info()
    ]
    return {
        "numpy": {
            **{part: {key: dependencies.get(part, {}).get(key) for key in ("name", "version", "openblas configuration")}
               for part in ("blas", "lapack")},
            "simd": built.get("SIMD Extensions", {}),
        },
        "loaded": sorted(loaded, key=lambda library: [str(value) for value in library.values()]),
        "torch": torch_blas() if "torch" in sys.modules else None,
    }


def torch_blas() -> dict[str, Any]:
    """torch's BLAS and LAPACK (from its build configuration), MKL, CPU kernels and threads."""
    import torch

    configuration = torch.__config__.show()

    def setting(name: str) -> str | None:
        found = re.search(rf"\b{name}=([^,\s]+)", configuration)
        return found.group(1) if found else None

    mkl = re.search(r"Math Kernel Library Version (.+?) for ", configuration)
    return {
        "blas_info": setting("BLAS_INFO"),
        "lapack_info": setting("LAPACK_INFO"),
        "mkl": torch.backends.mkl.is_available(),
        "mkl_version": mkl.group(1) if mkl else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
    }
