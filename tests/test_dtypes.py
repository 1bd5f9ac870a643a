"""``--autocast auto``: bf16 only where the hardware computes it natively."""

from __future__ import annotations

import pytest

from nodeprune.dtypes import AUTOCAST_CHOICES, cpu_flags, resolve_autocast
from nodeprune.errors import NodepruneError

SAPPHIRE = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n"


def test_cpu_flags_are_read_from_cpuinfo():
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(SAPPHIRE)
    assert "avx512_bf16" not in cpu_flags(EPYC)
    assert cpu_flags("") == frozenset()


@pytest.mark.parametrize(
    ("cpuinfo", "dtype", "expected"),
    [
        (SAPPHIRE, "float32", "bfloat16"),
        (EPYC, "float32", "off"),  # emulated bf16 was 13x slower than fp32
        (SAPPHIRE, "bfloat16", "off"),  # weights already 16-bit
        (SAPPHIRE, "float16", "off"),
    ],
)
def test_auto_follows_the_cpu(cpuinfo, dtype, expected):
    assert resolve_autocast("auto", "cpu", dtype, cpu_flags(cpuinfo)) == expected


def test_explicit_choices_are_kept_and_other_devices_stay_off():
    for name in ("off", "bfloat16", "float16"):
        assert resolve_autocast(name, "cpu", "float32", frozenset()) == name
    assert resolve_autocast("auto", "mps", "float32", frozenset()) == "off"
    assert "auto" in AUTOCAST_CHOICES


def test_an_unknown_autocast_is_refused_with_the_choices():
    from nodeprune.config import DiscoveryConfig

    with pytest.raises(NodepruneError, match="auto, off, bfloat16"):
        DiscoveryConfig(autocast="bf16").validate()
