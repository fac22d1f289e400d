"""Service configuration from ``METAPREDICT_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from metapredict.settings import StoreSettings


class ServingSettings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="METAPREDICT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    tasks: tuple[str, ...] = ("tropism", "dormancy")
    alias: str = "champion"
    max_patients: int = Field(1000, ge=1, description="patients per request; more get 413")
    max_body_bytes: int = Field(4_000_000, ge=1024, description="larger bodies get 413")
    poll_seconds: float = Field(
        30.0, ge=0, description="how often to look for a new champion; 0 disables"
    )
    reload_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="a reload (poll or admin) that takes longer answers 'failed' and goes on "
        "in the background",
    )
    api_key: SecretStr | None = Field(
        None, description="when set, prediction routes require the X-API-Key header"
    )
    admin_api_key: SecretStr | None = Field(
        None, description="X-API-Key for POST /v1/admin/reload; unset disables the route"
    )
    top_features: int = Field(5, ge=0, le=50, description="contributions returned per output")
    pandera_batch_rows: int = Field(
        200, ge=1, description="batches at least this large are validated with pandera"
    )


def get_serving_settings() -> ServingSettings:
    return ServingSettings()
