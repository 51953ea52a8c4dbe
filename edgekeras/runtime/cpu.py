"""The CPU a measurement ran on: its name, core count and the instructions that make int8 fast.

int8 speed-ups vary from about 1.1x to over 4x between x86 CPUs: what decides is whether the CPU has
int8 dot-product instructions (x86: AVX-512 VNNI, AVX-VNNI, AMX-INT8; Arm: the dot-product extension,
`asimddp`, and the int8 matrix multiply, `i8mm`). Without them (AVX2 only, or Armv8.0), LiteRT's and
ONNX Runtime's int8 kernels multiply in 16 bits and gain little over float32. Every latency edgekeras
reports comes with this record.

Standard library only: it runs on the device (`/proc/cpuinfo` on Linux and Android).

Example:
    info = cpu_info()
    print(info["name"], info["int8_features"], info["int8_note"])
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

#: x86 flags (as /proc/cpuinfo spells them) that matter for float32/int8 inference -> display name.
X86_FEATURES = {
    "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16",
}
#: Arm `Features` (as /proc/cpuinfo spells them) -> display name.
ARM_FEATURES = {
    "asimd": "NEON", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16", "bf16": "bf16", "sve": "SVE",
    "sve2": "SVE2", "sme": "SME",
}
#: Features that give int8 dot products (the reason int8 can be several times faster than float32).
INT8_DOT = ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8", "dotprod", "i8mm")

# Arm CPU parts (implementer 0x41, ARM Ltd) seen on boards and phones, for a readable name.
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd4f": "Neoverse-V2",
    "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}


def read_cpuinfo() -> str:
    """The text of /proc/cpuinfo, or "" where there is none (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_info(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """Name, architecture, cores and int8-relevant features of this CPU (or of a given /proc/cpuinfo text).

    Args:
        cpuinfo: the text of a /proc/cpuinfo (default: this machine's).
        machine: the architecture, e.g. "x86_64", "aarch64" (default: this machine's, or guessed from the text).

    Returns:
        {"name", "machine", "cores", "features" (display names, all relevant ones found), "int8_features"
        (those giving int8 dot products), "int8_note" (what to expect from int8 here)}.

    Example:
        cpu_info(open("board-cpuinfo.txt").read())["int8_features"]   # ['dotprod', 'i8mm']
    """
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    fields = _fields(text)
    if machine is None:
        machine = platform.machine() if cpuinfo is None else ("aarch64" if "CPU implementer" in fields else "x86_64")
    flags = set(fields.get("flags", "").split())
    arm_flags = set(fields.get("Features", "").split())
    features = [name for flag, name in X86_FEATURES.items() if flag in flags]
    features += [name for flag, name in ARM_FEATURES.items() if flag in arm_flags]
    name = (fields.get("model name") or fields.get("Model") or fields.get("Hardware") or _arm_part_names(text)
            or (platform.processor() if cpuinfo is None else "") or machine or "unknown CPU")
    cores = len(re.findall(r"^processor\s*:", text, flags=re.M)) or (os.cpu_count() if cpuinfo is None else None)
    int8 = [f for f in features if f in INT8_DOT]
    return {"name": name.strip(), "machine": machine, "cores": cores, "features": features, "int8_features": int8,
            "int8_note": _int8_note(features, int8, bool(flags), bool(arm_flags))}


def _fields(text: str) -> dict[str, str]:
    """The first value of each key in a /proc/cpuinfo text."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _arm_part_names(text: str) -> str:
    """'4x Cortex-A76 + 4x Cortex-A55' from the implementer/part lines of an Arm /proc/cpuinfo."""
    parts = re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", text, flags=re.M)
    if not parts:
        return ""
    counts: dict[str, int] = {}
    for p in parts:
        label = _ARM_PARTS.get(p.lower(), f"Arm part {p}")
        counts[label] = counts.get(label, 0) + 1
    return " + ".join(f"{n}x {label}" for label, n in counts.items())


def _int8_note(features: list[str], int8: list[str], x86: bool, arm: bool) -> str:
    if int8:
        return f"int8 dot-product instructions: {', '.join(int8)} (int8 can be several times faster than float32)"
    if x86:
        base = "AVX2" if "AVX2" in features else "no AVX2"
        return (f"no int8 dot-product instructions ({base}, no VNNI): int8 kernels multiply in 16 bits, so int8 is "
                "often only about 1.1-1.2x faster than float32 here")
    if arm:
        return ("no Arm dot-product extension (asimddp): int8 kernels multiply in 16 bits, so int8 gains over "
                "float32 are small here")
    return "int8 features unknown (no /proc/cpuinfo)"


def describe(info: dict) -> str:
    """One line for reports: 'AMD EPYC (x86_64, 2 cores; AVX2, AVX-512 VNNI)'."""
    features = ", ".join(info.get("features") or []) or "no SIMD features listed"
    cores = f", {info['cores']} cores" if info.get("cores") else ""
    return f"{info.get('name', 'unknown CPU')} ({info.get('machine', '?')}{cores}; {features})"
