"""Hub settings: defaults that run on a laptop, overridable by environment (EDGEFLEET_HUB_*) or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
        default=None,
        description="base URL devices use to fetch artifacts; default http(s)://<host>:<port>",
    )
    # the API over HTTPS (README, Security: "The hub's API over TLS"; api_tls.py)
    tls: bool = Field(
        default=False, description="serve the API over HTTPS, with a certificate from the hub CA unless tls_cert_file"
    )
    server_names: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="DNS names and IP addresses in the hub CA's certificate for the API (comma-separated in the "
        "environment); default localhost, 127.0.0.1, the listen address if an IP, the public URL's host",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="the operator's own certificate (chain, PEM) for the API, e.g. a public CA's; implies tls",
    )
    tls_key_file: Path | None = Field(default=None, description="key of tls_cert_file (PEM)")
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

    @field_validator("server_names", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return [n.strip() for n in v.split(",") if n.strip()] if isinstance(v, str) else v

    @property
    def api_tls(self) -> bool:
        """Whether the API is served over HTTPS: ``tls``, or the operator's own certificate."""
        return self.tls or self.tls_cert_file is not None

    @property
    def local_url(self) -> str:
        """The API as a client on this machine reaches it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.api_tls else 'http'}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") if self.public_url else self.local_url

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
    def api_cert_path(self) -> Path:
        return self.identity_dir / "api.pem"

    @property
    def api_key_path(self) -> Path:
        return self.identity_dir / "api.key"

    @property
    def bundle_broker_url(self) -> str:
        return self.device_broker_url or self.broker_url
