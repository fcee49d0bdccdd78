"""config: server settings that refuse to be invalid, and the TLS files checked early."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, ServerConfig


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", 70000, "port 70000"),
        ("cert_reload_interval", 0, "reload interval"),
        ("threads", 0, "threads"),
        ("max_body_bytes", 0, "max body bytes"),
        ("drain_timeout", -1, "drain timeout"),
        ("shutdown_delay", -1, "shutdown delay"),
    ],
)
def test_server_settings_out_of_range_are_rejected(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(tls_cert=Path("c"), tls_key=Path("k"), **{field: value})


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_text("key")
    config = ServerConfig(tls_cert=tmp_path / "tls.crt", tls_key=key)

    with pytest.raises(ConfigError, match=r"tls\.crt"):
        config.check_files()
