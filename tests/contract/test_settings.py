"""Every setting is documented where users look for it."""
from pathlib import Path

from contract.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_configuration_table():
    readme = README.read_text()
    missing = [f"RECO_{name.upper()}" for name in Settings.model_fields if f"`RECO_{name.upper()}`" not in readme]
    assert not missing, f"README's Configuration table lacks {missing}"


def test_a_sasl_client_logs_in_as_its_role_over_tls_trusting_only_the_stacks_ca(tmp_path):
    import ssl
    import subprocess

    ca = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(tmp_path / "ca.key"), "-out", str(ca)], check=True, capture_output=True)
    settings = Settings(kafka_ca_file=ca, kafka_producer_password="p-secret")
    options = settings.kafka_client_options("producer")
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("producer", "p-secret")
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the stack's CA, not the system's


def test_a_missing_kafka_password_is_a_clear_error_and_plaintext_needs_none():
    import pytest

    with pytest.raises(RuntimeError, match="RECO_KAFKA_WORKER_PASSWORD is not set"):
        Settings(kafka_worker_password="").kafka_client_options("worker")
    plain = Settings(kafka_security_protocol="PLAINTEXT", bootstrap_servers="127.0.0.1:9092")  # not make test's three
    assert plain.kafka_client_options("worker") == {"bootstrap_servers": "127.0.0.1:9092"}


def test_topics_are_replicated_to_at_most_three_brokers_and_a_write_needs_all_but_one():
    shapes = {n: (Settings(kafka_brokers=n).replication_factor, Settings(kafka_brokers=n).min_insync_replicas)
              for n in (1, 2, 3, 5)}
    assert shapes == {1: (1, 1), 2: (2, 1), 3: (3, 2), 5: (3, 2)}


def test_redis_logs_in_as_its_acl_user_only_when_a_password_is_set():
    with_password = Settings(redis_password="k123", redis_user="feast")
    assert with_password.redis_auth == {"username": "feast", "password": "k123"}
    assert with_password.redis_connection_string == "127.0.0.1:6379,username=feast,password=k123"
    without = Settings(redis_password="")
    assert without.redis_auth == {"username": None, "password": None}
    assert without.redis_connection_string == "127.0.0.1:6379"
