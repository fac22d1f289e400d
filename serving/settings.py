"""Service configuration from ``METAPREDICT_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from metapredict.settings import StoreSettings

#: The settings holding secrets, and the variable that sets each.
KEY_VARIABLES = {
    "api_key": "METAPREDICT_API_KEY",
    "admin_api_key": "METAPREDICT_ADMIN_API_KEY",
    "metrics_api_key": "METAPREDICT_METRICS_API_KEY",
}


class ServingSettings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="METAPREDICT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    tasks: tuple[str, ...] = ("tropism", "dormancy")
    alias: str = "champion"
    max_patients: int = Field(1000, ge=1, description="patients per request; more get 413")
    max_body_bytes: int = Field(
        4_000_000,
        ge=1024,
        description="larger bodies get 413, counted as they arrive (chunked bodies too)",
    )
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
        None,
        description="when set, prediction routes and GET /v1/models require the X-API-Key header",
    )
    admin_api_key: SecretStr | None = Field(
        None, description="X-API-Key for POST /v1/admin/reload; unset disables the route"
    )
    metrics_api_key: SecretStr | None = Field(
        None,
        description="when set, GET /metrics requires it (X-API-Key or Authorization: Bearer); "
        "unset leaves /metrics open",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds a client may take to send a request's headers, from the moment it "
        "connects (or starts its next request); then the connection is closed",
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a request body may pause between two pieces; then 408 and the "
        "connection is closed",
    )
    keep_alive_timeout: int = Field(
        5, ge=1, description="seconds an idle keep-alive connection stays open after a response"
    )
    shutdown_timeout: int = Field(
        10, ge=1, description="seconds requests in flight get to finish on SIGTERM"
    )
    top_features: int = Field(5, ge=0, le=50, description="contributions returned per output")
    pandera_batch_rows: int = Field(
        200, ge=1, description="batches at least this large are validated with pandera"
    )

    @field_validator("api_key", "admin_api_key", "metrics_api_key")
    @classmethod
    def _no_empty_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            variable = KEY_VARIABLES[str(info.field_name)]
            raise ValueError(
                f"{variable} is set but empty, which would accept an empty X-API-Key. Set it to "
                f"a secret, or unset it (unset {variable})"
            )
        return value


def get_serving_settings() -> ServingSettings:
    return ServingSettings()


def settings_problems(error: ValidationError) -> list[str]:
    """One line per invalid setting, naming its environment variable (for start-up errors)."""
    lines = []
    for e in error.errors():
        field = ".".join(str(p) for p in e.get("loc", ()))
        variable = KEY_VARIABLES.get(field, f"METAPREDICT_{field.upper()}")
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(message if message.startswith(variable) else f"{variable}: {message}")
    return lines
