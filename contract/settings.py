"""The one settings object: topic names, ports, paths. Every value can be set from the
environment with the ``RECO_`` prefix (e.g. ``RECO_BOOTSTRAP_SERVERS``); secrets that `make setup`
generates are read from ``<stack dir>/secrets.env`` (the environment wins over the file)."""
from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STACK_DIR = PROJECT_ROOT / ".stack"
SECRETS_FILE = Path(os.environ.get("RECO_STACK_DIR") or DEFAULT_STACK_DIR) / "secrets.env"

# Each Kafka client acts as one of these users; create_topics.py gives each only the ACLs it needs
# (README, "Access"): the worker reads events and writes recommendations, a producer writes events
# only, a reader reads events, recommendations and dead letters, the admin (a super user) manages.
KafkaRole = Literal["admin", "worker", "producer", "reader"]

# Every producer of the project (kafka-python and aiokafka take the same names): a write counts once
# every in-sync replica has it, and a send retried after its partition's leader moved is written
# once (the broker drops the repeat by producer id and sequence number).
DURABLE_PRODUCER: dict[str, Any] = {"acks": "all", "enable_idempotence": True}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECO_", frozen=True, env_file=SECRETS_FILE, extra="ignore")

    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    # Brokers of the cluster (`make up KAFKA_BROKERS=3` runs three; deploy/lib.sh then lists them
    # all in RECO_BOOTSTRAP_SERVERS). Topics get min(3, brokers) replicas, and with more than one
    # a write needs all but one of them in sync (acks=all, min.insync.replicas).
    kafka_brokers: int = Field(default=1, ge=1)
    events_topic: str = "events"
    recommendations_topic: str = "recommendations"
    dlq_topic: str = "events.dlq"
    control_topic: str = "control"  # erasure requests; every worker reads all of it
    # Events re-keyed by item and by user (contract.messages.Tally): the worker owning a partition
    # of these owns those items' (users') counters, so counts stay exact with any number of workers.
    item_tally_topic: str = "events.by-item"
    user_tally_topic: str = "events.by-user"
    topic_partitions: int = 8  # events, recommendations, DLQ, tallies: the most workers that all get work
    consumer_group: str = "streamreco"
    # Static group membership: a worker restarted under the same id gets its partitions back at
    # once instead of after a rebalance; a member silent for session_timeout_s loses them.
    worker_instance_id: str = "worker-1"
    session_timeout_s: float = 10.0
    commit_interval_s: float = 1.0  # bounds what a killed worker processes twice (with feature_flush_s)
    max_event_bytes: int = 1_000_000  # larger events are dead-lettered (too_large)
    # The broker's message.max.bytes: the largest message anyone can put on `events`. Dead letters
    # carry the message's bytes (base64 at worst, 4/3), so the DLQ topic accepts twice this.
    max_message_bytes: int = 4_194_304
    # Access: the local broker takes SASL_SSL only (SCRAM-SHA-512 users over TLS, certificates made
    # by `make setup`); PLAINTEXT is for clusters that secure the network themselves. Passwords
    # come from secrets.env (`make setup`) or the environment, never from the repository.
    kafka_security_protocol: Literal["SASL_SSL", "PLAINTEXT"] = "SASL_SSL"
    kafka_ca_file: Path | None = None  # default: <stack dir>/tls/ca.pem
    kafka_admin_password: SecretStr = SecretStr("")
    kafka_worker_password: SecretStr = SecretStr("")
    kafka_producer_password: SecretStr = SecretStr("")
    kafka_reader_password: SecretStr = SecretStr("")
    kafka_controller_password: SecretStr = SecretStr("")  # the broker's own controller listener (PLAIN)
    # How long the broker keeps events, recommendations, dead letters and control messages: what
    # an erased shopper's events on the topics live at most (create_topics.py sets retention.ms).
    topic_retention_hours: int = 24

    # Recommendation shape
    k: int = 10
    # The site's catalogue. A served model trained on another one (serving.model.artifacts.
    # trained_catalogue) only gets to recommend items the stream has shown to exist.
    catalogue: str = "synthetic"
    # Never recommended: the item of the event itself and items bought in the session; with this
    # on, also every item the session has touched.
    exclude_session_items: bool = False
    max_session_len: int = 50
    diversity: float = 0.0  # λ in [0, 1] of the MMR category re-rank (serving/model/rerank.py); 0: plain top-k

    # Online attribution (features/feedback.py): a later event of a session on an item among its
    # last attribution_messages recommendations, at most attribution_window_s after, counts as a hit.
    attribution_messages: int = 5
    attribution_window_s: int = 1800

    # Worker batching: an agent takes up to batch_size events or waits batch_wait_s. Batches fill
    # only under a backlog (at 500 events/s a 20 ms wait holds about 10); there 256 drained 20%
    # faster than 64 (fewer calls, requests and flushes per event; docs/benchmarks.md).
    batch_size: int = 256
    batch_wait_s: float = 0.02
    batches_in_flight: int = 2  # a batch is ranked while the next one is folded
    producer_linger_s: float = 0.002  # fewer, larger produce requests (each costs the worker CPU)

    # Triton
    triton_host: str = "127.0.0.1"
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    model_name: str = "session_transformer"
    # A call slower than this counts as a failure: that server's circuit opens for the cool-down,
    # and batches meanwhile get popular items (fallback triton_unavailable) without waiting.
    triton_timeout_s: float = 1.0
    triton_cooldown_s: float = 2.0
    triton_urls: str = ""  # comma-separated gRPC host:port of several Triton servers; default the one above

    # Worker-held state: Feast is written in the background at least this often; memory is bounded
    # per table (sessions, items, users) and idle entries are dropped (Feast keeps them).
    feature_flush_s: float = 0.5
    state_max_entries: int = 200_000
    state_idle_s: float = 1800.0

    # Retention: how long the online store keeps a row after its last write (Redis key expiry;
    # with SQLite the worker deletes older rows). Sessions are short-lived by nature; user and
    # item counters keep longer. The worker's memory drops idle entries sooner (state_idle_s).
    session_ttl_s: int = 2 * 24 * 3600
    item_ttl_s: int = 365 * 24 * 3600
    user_ttl_s: int = 90 * 24 * 3600

    # Privacy: user ids (and, optionally, session ids) are replaced by HMAC-SHA256 pseudonyms
    # before Feast, logs, metrics or the model see them. The key comes from the environment
    # (`make setup` writes one to .stack/secrets.env); recommendations carry the pseudonym unless
    # publish_user_id is on.
    pseudonym_key: SecretStr = SecretStr("")
    pseudonymize_sessions: bool = False
    publish_user_id: bool = False

    # Feast
    feast_repo: Path = PROJECT_ROOT / "features" / "feature_repo"
    online_store: Literal["sqlite", "redis"] = "redis"  # `make up` starts Redis; sqlite embeds Feast
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_user: str = "feast"  # an ACL user (deploy/up.sh turns Redis's default user off)
    redis_password: SecretStr = SecretStr("")  # empty: no AUTH (a Redis that allows it)
    project_name: str = "streamreco"

    # Local stack
    run_dir: Path = PROJECT_ROOT / ".run"
    stack_dir: Path = DEFAULT_STACK_DIR
    model_repo: Path = PROJECT_ROOT / "model_repo"
    bind_host: str = "127.0.0.1"  # the worker's web and metrics ports; 0.0.0.0 in a container
    worker_web_port: int = 6066
    metrics_port: int = 9108
    prometheus_port: int = 9090

    @property
    def replication_factor(self) -> int:
        return min(3, self.kafka_brokers)

    @property
    def min_insync_replicas(self) -> int:
        return max(1, self.replication_factor - 1)

    @property
    def max_dlq_record_bytes(self) -> int:
        return 2 * self.max_message_bytes

    @property
    def triton_grpc_urls(self) -> list[str]:  # the worker talks gRPC
        listed = [url.strip() for url in self.triton_urls.split(",") if url.strip()]
        return listed or [f"{self.triton_host}:{self.triton_grpc_port}"]

    def kafka_password(self, role: KafkaRole) -> str:
        password: SecretStr = getattr(self, f"kafka_{role}_password")
        if not password.get_secret_value():
            raise RuntimeError(f"RECO_KAFKA_{role.upper()}_PASSWORD is not set: `make setup` writes it to "
                               f"{self.stack_dir / 'secrets.env'}")
        return password.get_secret_value()

    def kafka_ssl_context(self) -> ssl.SSLContext:
        """Trusts the stack's own CA only, and checks the broker's name (its certificate names
        127.0.0.1 and localhost)."""
        return ssl.create_default_context(cafile=str(self.kafka_ca_file or self.stack_dir / "tls" / "ca.pem"))

    def kafka_client_options(self, role: KafkaRole) -> dict[str, Any]:
        """Connection keyword arguments for a kafka-python or aiokafka client acting as ``role``."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.kafka_security_protocol == "SASL_SSL":
            options.update(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                           sasl_plain_username=role, sasl_plain_password=self.kafka_password(role),
                           ssl_context=self.kafka_ssl_context())
        return options

    @property
    def redis_auth(self) -> dict[str, str | None]:
        """username/password keyword arguments for redis.Redis (None: no AUTH)."""
        password = self.redis_password.get_secret_value()
        return {"username": self.redis_user if password else None, "password": password or None}

    @property
    def redis_connection_string(self) -> str:  # Feast's format; values must not hold ',' or '='
        password = self.redis_password.get_secret_value()
        auth = f",username={self.redis_user},password={password}" if password else ""
        return f"{self.redis_host}:{self.redis_port}{auth}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
