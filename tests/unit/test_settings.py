"""Settings: defaults, every kind of bad value, .env layering and *_FILE secrets."""

from __future__ import annotations

import pytest

from app.config.settings import GROUPS, SECRETS, TABLE, ConfigError, Settings, load_environ


def test_defaults_match_the_interface():
    s = Settings.from_env({})
    assert (s.host, s.port, s.metrics_port) == ("0.0.0.0", 8080, 9090)
    assert s.openai_base_url == "https://api.openai.com/v1"
    assert s.anthropic_base_url == "https://api.anthropic.com"
    assert s.redis_url == "redis://localhost:6379" and s.enable_l2_cache
    assert (s.l1_cache_size, s.l1_ttl_seconds, s.l2_ttl_seconds) == (1000, 300, 3600)
    assert s.max_request_bytes == 10485760
    assert s.models_file == "config/models.yaml" and s.clients_file == "config/clients.yaml"
    assert s.enable_tracing and s.otlp_endpoint == "http://jaeger:4317"
    assert s.log_level == "INFO" and s.openai_api_key is None


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("PORT", "70000"), ("METRICS_PORT", "-1"), ("WEB_CONCURRENCY", "0"),
    ("ENABLE_L2_CACHE", "maybe"), ("L1_CACHE_SIZE", "1.5"), ("GUNICORN_KEEPALIVE", "long"),
    ("GUNICORN_TIMEOUT", "-1"), ("GUNICORN_GRACEFUL_TIMEOUT", "30s"), ("FORWARDED_ALLOW_IPS", "10.0.0.300"),
    ("LLM_EDGE_PATCHES", "sometimes"),
    ("UPSTREAM_CONNECT_TIMEOUT", "0"), ("REQUEST_TIMEOUT", "soon"), ("LOG_LEVEL", "loud"),
    ("OPENAI_BASE_URL", "api.openai.com"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
])
def test_a_bad_value_names_its_variable_in_one_line(name, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message and repr(value) in message


def test_rust_log_is_an_alias_and_log_level_wins():
    assert Settings.from_env({"RUST_LOG": "debug,hyper=warn"}).log_level == "DEBUG"
    assert Settings.from_env({"RUST_LOG": "debug", "LOG_LEVEL": "error"}).log_level == "ERROR"


def test_tls_needs_both_readable_files(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="TLS_CERT_PATH and TLS_KEY_PATH"):
        Settings.from_env({"TLS_CERT_PATH": str(cert)})
    with pytest.raises(ConfigError, match="TLS_KEY_PATH: cannot read"):
        Settings.from_env({"TLS_CERT_PATH": str(cert), "TLS_KEY_PATH": str(tmp_path / "missing.pem")})


def test_a_bad_secret_names_its_variable_but_not_its_value():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"REDIS_URL": "http://default:Passw0rdValue@redis"})
    message = str(info.value)
    assert message.startswith("REDIS_URL must be a Redis URL") and "\n" not in message
    assert "Passw0rdValue" not in message


def test_secret_from_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    assert Settings.from_env({"OPENAI_API_KEY_FILE": str(key_file)}).openai_api_key == "sk-from-file"
    (tmp_path / "redis").write_text("redis://default:pw@127.0.0.1:6390/0\n")
    assert Settings.from_env({"REDIS_URL_FILE": str(tmp_path / "redis")}).redis_url == "redis://default:pw@127.0.0.1:6390/0"
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY_FILE: cannot read"):
        Settings.from_env({"ANTHROPIC_API_KEY_FILE": str(tmp_path / "nope")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"^OPENAI_API_KEY_FILE: '.*empty' is empty$"):
        Settings.from_env({"OPENAI_API_KEY_FILE": str(tmp_path / "empty")})


@pytest.mark.parametrize("name", SECRETS)
def test_a_secret_and_its_file_both_set_is_an_error(tmp_path, name):
    """One rule for every secret of the table, as the official postgres image has it."""
    key_file = tmp_path / "secret"
    key_file.write_text("from-file\n")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: "redis://plain" if name == "REDIS_URL" else "plain", f"{name}_FILE": str(key_file)})
    assert str(info.value) == f"{name} and {name}_FILE are both set; set only one"


def test_every_setting_has_a_one_line_doc_and_its_default_parses():
    for entry in TABLE:
        assert entry.doc and "\n" not in entry.doc, entry.env
        assert entry.group in GROUPS, entry.env
    assert len({e.env for e in TABLE}) == len(TABLE)
    defaults = Settings()
    assert (defaults.gunicorn_keepalive, defaults.gunicorn_timeout, defaults.gunicorn_graceful_timeout) == (75, 60, 30)
    assert defaults.patches_enabled is True
    assert Settings.from_env({"LLM_EDGE_PATCHES": "false"}).patches_enabled is False


def test_dotenv_is_read_and_the_real_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9000\nHOST=127.0.0.2\n")
    merged = load_environ(env_file, {"PORT": "9100"})
    assert merged["PORT"] == "9100" and merged["HOST"] == "127.0.0.2"


def test_public_dict_hides_keys():
    public = Settings.from_env({"OPENAI_API_KEY": "sk-secret-value"}).public_dict()
    assert public["openai_api_key"] is True and "sk-secret-value" not in repr(public)
    public = Settings.from_env({"REDIS_URL": "redis://default:RedisPw@r:6379"}).public_dict()
    assert public["redis_url"] is True and "RedisPw" not in repr(public)
