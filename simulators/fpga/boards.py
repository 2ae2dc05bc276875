"""The catalogue of simulated FPGA boards, described by the figures of real parts.

Every figure comes from the vendor's product brief, data sheet or platform guide named in the
board's ``source``; figures marked approximate are rounded or derived (e.g. peak bandwidth from
bus width x transfer rate) rather than quoted. ``shell_fraction`` is this simulator's assumption
of how much of the fabric the static shell/platform region keeps for itself; it is not a vendor
figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from edgefleet.simulators.errors import UnknownBoard

BRAM36_BITS = 36 * 1024  # one UltraScale+ block RAM: 36 Kb (two 18 Kb halves)
URAM_BITS = 288 * 1024  # one UltraRAM block: 288 Kb (4K x 72)


@dataclass(frozen=True)
class Board:
    name: str  # the key used on the command line and in EDGEFLEET_FPGA_SIM
    title: str
    part: str
    category: Literal["edge", "datacenter"]
    shell_id: str  # platform / interface id a binary must be built against
    dsp: int  # DSP48E2 slices
    bram36: int  # 36 Kb block RAMs
    uram: int  # 288 Kb UltraRAM blocks
    luts: int  # CLB LUTs
    clock_mhz: float  # default kernel clock of the platform
    memory: str  # off-chip memory, in words
    memory_bytes: int
    memory_bandwidth_gbs: float  # peak off-chip bandwidth, GB/s
    pcie_bandwidth_gbs: float | None  # host link, GB/s per direction; None: shares host DDR (SoC)
    int8_macs_per_dsp: int  # 2: two int8 multiplies share one DSP48E2 (AMD WP486)
    shell_fraction: float  # share of DSP/BRAM/URAM/LUT the static shell keeps (simulator assumption)
    source: str

    def available(self) -> dict[str, int]:
        """Resources left for kernels after the static shell."""
        keep = 1.0 - self.shell_fraction
        return {
            "dsp": int(self.dsp * keep),
            "bram36": int(self.bram36 * keep),
            "uram": int(self.uram * keep),
            "luts": int(self.luts * keep),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"available": self.available()}


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="kv260",
            title="AMD Kria KV260 Vision AI Starter Kit (K26 SOM)",
            part="XCK26-SFVC784-2LV (Zynq UltraScale+ MPSoC, ZU5EV-class fabric)",
            category="edge",
            shell_id="xilinx_kv260_base_202220_1",
            dsp=1248,
            bram36=144,
            uram=64,
            luts=117_120,
            clock_mhz=300.0,
            memory="4 GB DDR4, 64-bit, 2400 MT/s (shared with the Arm cores)",
            memory_bytes=4 << 30,
            memory_bandwidth_gbs=19.2,
            pcie_bandwidth_gbs=None,
            int8_macs_per_dsp=2,
            shell_fraction=0.05,
            source=(
                "AMD Kria K26 SOM data sheet DS987 and KV260 data sheet DS986 (DSP, BRAM, URAM, LUT, DDR4); "
                "DDR bandwidth approximate (64 bit x 2400 MT/s peak); 300 MHz is the kernel clock of the "
                "Vitis AI DPU platform on KV260 (approximate); shell id modelled on Kria Vitis platform names"
            ),
        ),
        Board(
            name="u50",
            title="AMD Alveo U50 Data Center Accelerator Card",
            part="XCU50 (Virtex UltraScale+ with HBM)",
            category="datacenter",
            shell_id="xilinx_u50_gen3x16_xdma_5_202210_1",
            dsp=5952,
            bram36=1344,
            uram=640,
            luts=872_000,
            clock_mhz=300.0,
            memory="8 GB HBM2",
            memory_bytes=8 << 30,
            memory_bandwidth_gbs=316.0,
            pcie_bandwidth_gbs=15.75,
            int8_macs_per_dsp=2,
            shell_fraction=0.15,
            source=(
                "AMD Alveo U50 product brief and UG1120 platform guide (DSP, BRAM, URAM, LUT rounded to "
                "thousands, HBM2 316 GB/s, PCIe Gen3 x16); PCIe figure approximate: 8 GT/s x 16 lanes x "
                "128b/130b = 15.75 GB/s per direction before protocol overhead; shell share approximate"
            ),
        ),
        Board(
            name="u250",
            title="AMD Alveo U250 Data Center Accelerator Card",
            part="XCU250 (Virtex UltraScale+, 4 SLRs)",
            category="datacenter",
            shell_id="xilinx_u250_gen3x16_xdma_4_1_202210_1",
            dsp=12_288,
            bram36=2688,
            uram=1280,
            luts=1_728_000,
            clock_mhz=300.0,
            memory="64 GB DDR4, 4 channels x 72-bit, 2400 MT/s",
            memory_bytes=64 << 30,
            memory_bandwidth_gbs=77.0,
            pcie_bandwidth_gbs=15.75,
            int8_macs_per_dsp=2,
            shell_fraction=0.2,
            source=(
                "AMD Alveo U250 product brief (DSP 12,288, LUT 1,728K, 2,688 BRAM36, 1,280 URAM, DDR4 "
                "77 GB/s, PCIe Gen3 x16) and UG1120 (platform xilinx_u250_gen3x16_xdma_4_1_202210_1); "
                "PCIe figure approximate (15.75 GB/s per direction before protocol overhead); shell share "
                "approximate"
            ),
        ),
    )
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name.strip().lower()]
    except KeyError:
        raise UnknownBoard(
            f"unknown FPGA board {name!r}; known boards: {', '.join(sorted(BOARDS))} (see `edgefleet-sim fpga boards`)"
        ) from None
