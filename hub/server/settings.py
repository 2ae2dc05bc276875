"""Hub settings: defaults that run on a laptop, overridable by environment (EDGEFLEET_HUB_*) or CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_HUB_", extra="ignore")

    data_dir: Path = Field(default=Path(".edgefleet/hub"), description="key, blobs and the SQLite database")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    broker_url: str = Field(default="mqtt://127.0.0.1:1883", description="MQTT broker (hub and devices)")
    public_url: str | None = Field(
        default=None, description="base URL devices use to fetch artifacts; default http://<host>:<port>"
    )
    database_url: str | None = Field(default=None, description="default sqlite:///<data_dir>/hub.db")
    method_timeout_s: float = Field(default=10.0, gt=0, description="default wait for a direct-method response")

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "hub_key.pem"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
