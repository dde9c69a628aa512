"""What this machine is: CPU, memory, CUDA, Apple silicon, installed runtimes.

``probe()`` is cheap: torch is imported only when an NVIDIA driver is visible or on
Apple silicon, where it is the only way to ask about the device. The result carries a
hardware class (``cuda`` | ``apple`` | ``cpu``) and a stable ``key`` that names tuned
profiles (``HAYAKU_HOME/profiles/<key>.yaml``, see ``graph.auto``).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from backends.base import missing_modules


def slug(text: str) -> str:
    """'Intel(R) Xeon(R) CPU @ 2.20GHz' -> 'intel-xeon-cpu-2-20ghz'."""
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48] or "unknown"


def _sysctl(name: str) -> str | None:
    exe = shutil.which("sysctl")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-n", name], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_model() -> str:
    if platform.system() == "Darwin":
        brand = _sysctl("machdep.cpu.brand_string")
        if brand:
            return brand
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def total_memory_gb() -> float | None:
    if platform.system() == "Darwin":
        mem = _sysctl("hw.memsize")
        return round(int(mem) / 2**30, 1) if mem and mem.isdigit() else None
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _nvidia_visible() -> bool:
    return Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None


def _torch_devices(check_cuda: bool, check_mps: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": None, "cuda_devices": [], "mps": False}
    # Importing torch costs seconds; without an NVIDIA driver or Apple silicon it has nothing to tell.
    if not (check_cuda or check_mps) or missing_modules("torch"):
        return info
    try:
        import torch
    except Exception as exc:  # a broken torch install is reported, not fatal
        info["torch_error"] = str(exc)
        return info
    info["torch"] = torch.__version__
    if check_cuda and torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda_bf16"] = bool(torch.cuda.is_bf16_supported())
    if check_mps:
        mps = getattr(torch.backends, "mps", None)
        info["mps"] = bool(mps and mps.is_available())
    return info


def hardware_class(info: dict[str, Any]) -> str:
    if info.get("cuda_devices"):
        return "cuda"
    if info.get("macos") and info.get("machine") == "arm64":
        return "apple"
    return "cpu"


def hardware_key(info: dict[str, Any]) -> str:
    """Stable name of this kind of machine, e.g. ``cpu-intel-xeon-2-20ghz-2c`` or ``cuda-nvidia-h200-x1``."""
    cls = info["class"]
    if cls == "cuda":
        devices = info["cuda_devices"]
        return f"cuda-{slug(devices[0])}-x{len(devices)}"
    return f"{cls}-{slug(info['cpu'])}-{info['cores']}c"


def runtimes() -> dict[str, dict[str, Any]]:
    """Per backend: available or why not (from the registry, without importing runtimes)."""
    from backends.registry import status

    return {f"{r['role']}:{r['name']}": {"available": r["available"], "reason": r["reason"]} for r in status()}


@lru_cache(maxsize=1)
def _probe_cached(with_runtimes: bool) -> dict[str, Any]:
    system = platform.system()
    info: dict[str, Any] = {
        "system": system,
        "machine": platform.machine().lower(),
        "macos": system == "Darwin",
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "memory_gb": total_memory_gb(),
    }
    apple = info["macos"] and info["machine"] == "arm64"
    info.update(_torch_devices(check_cuda=_nvidia_visible(), check_mps=apple))
    info["class"] = hardware_class(info)
    info["key"] = hardware_key(info)
    if with_runtimes:
        info["runtimes"] = runtimes()
    return info


def probe(with_runtimes: bool = True) -> dict[str, Any]:
    """Describes this machine (cached per process): cpu, cores, memory_gb, cuda_devices, mps, class, key."""
    return dict(_probe_cached(with_runtimes))
