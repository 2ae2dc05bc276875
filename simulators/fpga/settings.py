"""Settings of the FPGA simulator, from the environment (the agent passes them on to modules).

EDGEFLEET_FPGA_SIM            board name(s), comma-separated: enables the simulated driver
EDGEFLEET_FPGA_SIM_FAULTS     fault injection spec (see ``faults.py``); empty: none
EDGEFLEET_FPGA_SIM_SEED       seed for fault decisions (reproducible runs)
EDGEFLEET_FPGA_SIM_STATE_DIR  where boards keep their loaded binary, so another process (the
                              agent's probe, a restarted module) sees what is programmed;
                              unset: state lives in this process only
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FpgaSimSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    boards: str = Field(default="", validation_alias=AliasChoices("EDGEFLEET_FPGA_SIM", "boards"))
    faults: str = Field(default="", validation_alias=AliasChoices("EDGEFLEET_FPGA_SIM_FAULTS", "faults"))
    seed: int | None = Field(default=None, validation_alias=AliasChoices("EDGEFLEET_FPGA_SIM_SEED", "seed"))
    state_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("EDGEFLEET_FPGA_SIM_STATE_DIR", "state_dir")
    )

    def board_names(self) -> list[str]:
        return [b.strip().lower() for b in self.boards.split(",") if b.strip()]
