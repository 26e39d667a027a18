"""Provenance of a result: the code that computed it and the machine it ran on.

Recorded in every ``result.json`` (``provenance``) and summarised in the leaderboard header (which reads them without importing torch), so
that a reader knows what produced a number and ``auxbench reproduce`` can say why a re-run
differs. A CPU trial is bitwise reproducible only on the same kind of machine with the same
thread count (docs/design.md, "Conventions: reproducibility has two levels"): the fingerprint lists
what decides that — the CPU model and its vector extensions, the kernel libraries torch was
built with (MKL, oneDNN), the instruction set torch dispatches to, the intra-op thread count,
and the environment variables that pin those choices.
"""
from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Environment variables that change which kernels run (and so the bits of a result). Thread-count
# variables (OMP_NUM_THREADS...) are not listed: the engine sets the count from the trial config.
NUMERIC_ENV_KNOBS = (
    "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
    "CUBLAS_WORKSPACE_CONFIG",
)
# CPU flags worth naming: the vector extensions kernels are chosen by (the full list is long).
_VECTOR_FLAG = re.compile(r"^(sse4_2|fma|avx|avx2|avx512\w*|avx_vnni|amx\w*|asimd|sve\w*)$")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> dict[str, Any]:
    """CPU model and vector extensions from ``/proc/cpuinfo`` (Linux); the platform's names elsewhere."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's entry
    except OSError:
        pass
    model = fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    return {"model": model, "vector_flags": sorted(f for f in flags if _VECTOR_FLAG.match(f)),
            "logical_cpus": os.cpu_count()}


def _torch_build() -> dict[str, Any]:
    """torch's version and the CPU math libraries it was built with (from ``torch.__config__``)."""
    import torch

    config = torch.__config__.show()

    def find(pattern: str) -> str | None:
        match = re.search(pattern, config)
        return match.group(1).strip() if match else None

    return {
        "torch": torch.__version__,
        "blas": find(r"BLAS_INFO=([^,\s]+)"),
        "mkl": find(r"Math Kernel Library Version ([^\n]+?) for") if torch.backends.mkl.is_available() else None,
        "onednn": find(r"MKL-DNN (v[\d.]+)") if torch.backends.mkldnn.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.version.cuda,
    }


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """auxbench's package version and, in a git checkout, its commit (``None`` outside one) and
    whether the code differs from it (published leaderboards are outputs, not code: ignored)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("auxbench")
    except PackageNotFoundError:
        package = None
    commit = dirty = None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(_PACKAGE_ROOT), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()

        if Path(git("rev-parse", "--show-toplevel")).resolve() == _PACKAGE_ROOT:  # not a checkout around a venv
            commit = git("rev-parse", "HEAD")
            dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!leaderboards"))
    except (OSError, subprocess.SubprocessError):
        pass
    return {"auxbench": package, "git_commit": commit, "git_dirty": dirty}


def machine_fingerprint(device: torch.device | str) -> dict[str, Any]:
    """What decides the bits of a trial's result on this machine (see the module docstring)."""
    import torch  # imported here: the leaderboard reads fingerprints without torch

    device = torch.device(device)
    return {
        "cpu": _cpu(),
        **_torch_build(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "env": {k: os.environ[k] for k in NUMERIC_ENV_KNOBS if k in os.environ},
        "os": platform.system(),
    }


def machine_differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints in what decides a trial's bits, one phrase each
    (``CPU 'Intel Xeon' -> 'AMD EPYC'``); empty when the machines are alike. The thread count is
    left out (the trial's config sets it) and so is the CPU count; the CUDA and cuDNN versions
    count only for a GPU trial."""
    changes = []

    def differ(what: str, a: Any, b: Any) -> None:
        if a != b:
            changes.append(f"{what} {a!r} -> {b!r}")

    differ("CPU", recorded["cpu"]["model"], here["cpu"]["model"])
    if recorded["cpu"]["vector_flags"] != here["cpu"]["vector_flags"]:
        old, new = set(recorded["cpu"]["vector_flags"]), set(here["cpu"]["vector_flags"])
        changes.append("CPU vector extensions" + "".join(
            f" {sign}{', '.join(sorted(flags))}" for sign, flags in (("-", old - new), ("+", new - old)) if flags))
    for key, what in (("torch", "torch"), ("blas", "BLAS"), ("mkl", "MKL"), ("onednn", "oneDNN"),
                      ("cpu_capability", "CPU dispatch"), ("os", "OS"), ("gpu", "GPU")):
        differ(what, recorded.get(key), here.get(key))
    if recorded.get("gpu") or here.get("gpu"):
        differ("CUDA", recorded.get("cuda"), here.get("cuda"))
        differ("cuDNN", recorded.get("cudnn"), here.get("cudnn"))
    differ("numeric environment", recorded.get("env", {}), here.get("env", {}))
    return changes


def provenance(config: dict, device: torch.device | str) -> dict[str, Any]:
    """The ``provenance`` block of a ``result.json``: code, versions, python and machine."""
    return {
        **code_version(),
        "engine_version": config.get("engine_version"),
        "problem_version": config.get("problem_version"),
        "method_version": config.get("method_version"),
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "machine": machine_fingerprint(device),
    }


def describe_machine(machine: dict[str, Any]) -> str:
    """One line: ``Intel Xeon (avx2, avx512f), torch 2.4 (mkl 2024.2, oneDNN v3.5, AVX512), 1 thread, cpu``."""
    cpu = machine["cpu"]
    isa = [f for f in cpu["vector_flags"] if f in ("avx2", "avx512f", "amx_tile", "asimd", "sve")]
    libs = ", ".join(x for x in (
        machine.get("blas") and f"BLAS {machine['blas']}", machine.get("onednn") and f"oneDNN {machine['onednn']}",
        machine.get("cpu_capability") and f"dispatch {machine['cpu_capability']}") if x)
    env = "".join(f", {k}={v}" for k, v in sorted(machine.get("env", {}).items()))
    threads = machine["threads"]
    return (f"{cpu['model']} ({', '.join(isa) or 'no AVX2'}), torch {machine['torch']} ({libs}), "
            f"{threads} thread{'s' if threads != 1 else ''}, {machine['gpu'] or machine['device']}{env}")


def machine_summary(results: Any) -> str | None:
    """The leaderboard header's machine line, from the ``provenance`` column of
    :func:`auxbench.results.load_results`; ``None`` when no result records one."""
    if "provenance" not in getattr(results, "columns", ()):
        return None
    finished = results[results["status"].isin(("done", "diverged", "degenerate"))] if "status" in results else results
    machines = Counter(describe_machine(p["machine"]) if isinstance(p, dict) and p.get("machine") else None
                       for p in finished["provenance"])
    unknown = machines.pop(None, 0)
    if not machines:
        return None
    if len(machines) == 1 and not unknown:
        return f"- Machine: {next(iter(machines))}"
    listed = [f"{text} ({n} trials)" for text, n in machines.most_common()]
    if unknown:  # trials reused from a record that predates machine fingerprints (auxbench run --reuse-published)
        listed.append(f"not recorded ({unknown} trials, reused from a record that predates machine fingerprints)")
    return f"- Machines (not bitwise comparable across them): {'; '.join(listed)}"
