"""tools/bench_client.py's confluent-kafka backend: the same SASL_SSL login as kafka-python's,
in librdkafka's names."""
import random
from argparse import Namespace
from collections import Counter
from pathlib import Path

import pytest

from tools.bench_client import CLIENTS, RealLengthSessions, connection, librdkafka_config, make_event, session_lengths


def args(tmp_path: Path, protocol: str = "SASL_SSL") -> Namespace:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("RECO_KAFKA_ADMIN_PASSWORD=s3cret\n")
    return Namespace(bootstrap="127.0.0.1:9092", security_protocol=protocol, user="admin",
                     secrets_file=secrets, ca_file=tmp_path / "ca.pem")


def test_sasl_ssl_maps_to_librdkafka_names(tmp_path, monkeypatch):
    monkeypatch.delenv("RECO_KAFKA_ADMIN_PASSWORD", raising=False)
    config = librdkafka_config(connection(args(tmp_path)))
    assert config == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL",
                      "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin", "sasl.password": "s3cret",
                      "ssl.ca.location": str(tmp_path / "ca.pem"), "reconnect.backoff.max.ms": 1000}


def test_plaintext_maps_to_the_broker_only(tmp_path):
    assert librdkafka_config(connection(args(tmp_path, "PLAINTEXT"))) == {
        "bootstrap.servers": "127.0.0.1:9092", "reconnect.backoff.max.ms": 1000}


def test_an_option_without_a_librdkafka_name_is_refused():
    with pytest.raises(ValueError, match="ssl_context"):
        librdkafka_config({"bootstrap_servers": "x:1", "ssl_context": object()})


def test_librdkafka_accepts_the_config(tmp_path, monkeypatch):
    """librdkafka checks every property when a client is made (no connection yet): a misspelt one
    fails here, not at the first `make bench`."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    monkeypatch.delenv("RECO_KAFKA_ADMIN_PASSWORD", raising=False)
    certifi = pytest.importorskip("certifi")
    (tmp_path / "ca.pem").write_bytes(Path(certifi.where()).read_bytes())  # librdkafka loads the CA file now
    config = CLIENTS["confluent"](connection(args(tmp_path))).config
    confluent_kafka.Producer({**config, "acks": "all", "linger.ms": 1})
    confluent_kafka.Consumer({**config, "group.id": "bench-x", "enable.auto.commit": False,
                              "fetch.wait.max.ms": 5, "max.partition.fetch.bytes": 10_000_000})
    with pytest.raises(confluent_kafka.KafkaException):
        confluent_kafka.Producer({**config, "sasl.mechanism.typo": "x"})


def test_sessions_take_their_lengths_from_a_views_file(tmp_path):
    views = tmp_path / "views.csv"
    rows = [f"{s};NA;{i};0;2016-05-09\n" for s, n in (("1", 3), ("2", 1), ("3", 3)) for i in range(n)]
    views.write_text("session_id;user_id;item_id;timeframe;eventdate\n" + "".join(rows))
    assert session_lengths(views) == [1, 3, 3]
    names = RealLengthSessions("t", 2, [1, 3], seed=0)
    drawn = [names(n) for n in range(40)]
    for slot in ("s0", "s1"):
        runs = Counter(name for name in drawn if f"-{slot}-" in name)
        lives = [runs[f"t-{slot}-{g}"] for g in range(len(runs))]
        assert set(lives[:-1]) <= {1, 3} and 1 in lives and 3 in lives  # the last may be cut short
    event = make_event("t", 5, 2, 10, random.Random(0), session_id=drawn[5])
    assert event["session_id"] == drawn[5] and event["event_id"] == "t-5"
