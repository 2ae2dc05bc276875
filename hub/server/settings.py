"""Hub settings: defaults that run on a laptop, overridable by environment (EDGEFLEET_HUB_*) or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MqttAuth = Literal["certificate", "password", "none"]


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_HUB_", extra="ignore")

    data_dir: Path = Field(default=Path(".edgefleet/hub"), description="keys, CA, blobs and the SQLite database")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    broker_url: str = Field(
        default="mqtt://127.0.0.1:1883", description="MQTT broker the hub connects to; mqtts:// for TLS"
    )
    device_broker_url: str | None = Field(
        default=None, description="broker URL written into bootstrap bundles (what devices reach); default broker_url"
    )
    public_url: str | None = Field(
        default=None, description="base URL devices use to fetch artifacts; default http://<host>:<port>"
    )
    database_url: str | None = Field(default=None, description="default sqlite:///<data_dir>/hub.db")
    method_timeout_s: float = Field(default=10.0, gt=0, description="default wait for a direct-method response")
    # the hub's identity at the broker (README, "Security")
    mqtt_auth: MqttAuth | None = Field(
        default=None,
        description="how the hub proves itself to the broker; default: what `hub broker-config` wrote for mqtts://, "
        "none for mqtt://",
    )
    mqtt_ca_file: Path | None = Field(
        default=None, description="CA that signed the broker's certificate; default the hub CA"
    )
    mqtt_cert_file: Path | None = Field(
        default=None, description="hub client certificate; default issued by the hub CA"
    )
    mqtt_key_file: Path | None = Field(default=None, description="key of mqtt_cert_file")
    mqtt_username: str | None = Field(
        default=None, description="auth password: the hub's username; default edgefleet-hub"
    )
    mqtt_password_file: Path | None = Field(
        default=None, description="auth password: file holding the hub's password; default made in <data_dir>/identity"
    )
    broker_config_dir: Path | None = Field(
        default=None, description="where `hub broker-config` wrote the broker's files; default: what it recorded"
    )

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
    def grant_key_path(self) -> Path:
        return self.data_dir / "blob_grant.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def identity_dir(self) -> Path:
        return self.data_dir / "identity"

    @property
    def bundle_broker_url(self) -> str:
        return self.device_broker_url or self.broker_url
