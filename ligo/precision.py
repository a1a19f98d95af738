"""Whether a device runs bfloat16 matrix products at full speed. Autocast to bfloat16 is
correct everywhere, but a CPU without bf16 instructions (no AVX512 / AMX: e.g. an AVX2-only
AMD EPYC or a laptop) runs its bf16 matmuls in a fallback kernel: measured 218x slower than
float32 on a 4,096 x 256 x 8,192 product on 2 AVX2 cores (68 s against 0.31 s), which turns a
5-minute run into hours. A run asked for --bf16 there stops with an error instead."""
from __future__ import annotations

import torch


def native_bfloat16(device: torch.device | str | None = None) -> bool:
    """True where bf16 matmuls run in fast kernels: CUDA devices with bf16 units (Ampere or
    newer), CPUs whose oneDNN has bf16 kernels (AVX512 or AMX). Default device: the one a
    training run picks (the GPU if there is one, else the CPU)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.3 has no such argument (and did not count emulation)
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:  # oneDNN's own test of the CPU's instruction set (a private op, stable since 1.x)
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return True  # other backends (mps, xpu): leave it to the user


def check_bfloat16(bf16: bool, device: torch.device | str = "cpu") -> None:
    """`error: --bf16 ...` before any work where the device would run it in a slow fallback."""
    if bf16 and not native_bfloat16(device):
        what = ("this GPU has no bfloat16 units (it needs Ampere or newer)"
                if torch.device(device).type == "cuda" else
                "this CPU has no bfloat16 instructions (AVX512 or AMX), so bf16 matmuls run in a "
                "fallback kernel ~200x slower than float32")
        raise ValueError(f"--bf16: {what}; train in float32 (drop --bf16, or --bf16 false)")


def resolve_bfloat16(bf16: bool | str, device: torch.device | str, *, fp16: bool = False) -> bool:
    """--bf16 as the run will use it: auto is true where the device runs bf16 natively (and
    --fp16 was not asked for); true is checked (check_bfloat16)."""
    if bf16 == "auto":
        return not fp16 and native_bfloat16(device)
    check_bfloat16(bf16, device)
    return bool(bf16)


def bf16_flag(value: str, device: torch.device | str | None = None) -> str:
    """A benchmark's --bf16 value resolved: auto is true where the device (default: the
    training runs' own) runs bf16 natively."""
    if value == "auto":
        return "true" if native_bfloat16(device) else "false"
    if value not in ("true", "false"):
        raise ValueError(f"--bf16 must be true, false or auto, not {value!r}")
    return value
