"""Smoke check that both Python Kafka clients work against the local broker.

kafka-python: KafkaAdminClient.create_topics / KafkaProducer / KafkaConsumer (group).
aiokafka (what faust-streaming uses): AIOKafkaProducer / AIOKafkaConsumer (group, commit).
Uses a throwaway topic and deletes it afterwards. Exit code 0 = all good.

    .venv/bin/python deploy/kafka_smoke.py [bootstrap]
"""
from __future__ import annotations

import asyncio
import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic


def main(bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smoke-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        print("kafka-python admin: created", topic, "broker versions:", admin._client.check_version())

        prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        for i in range(10):
            prod.send(topic, key=str(i % 2).encode(), value=f"kp-{i}".encode())
        prod.flush()
        prod.close()
        cons = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
                             auto_offset_reset="earliest", consumer_timeout_ms=10000,
                             enable_auto_commit=False)
        got = []
        for msg in cons:
            got.append(msg.value)
            if len(got) == 10:
                break
        cons.commit()
        cons.close()
        assert len(got) == 10, got
        print("kafka-python producer/consumer(group+commit): ok", len(got))

        got2 = asyncio.run(aio(bootstrap, topic))
        assert len(got2) == 20, got2
        print("aiokafka producer/consumer(group+commit): ok", len(got2))
    finally:
        admin.delete_topics([topic])
        admin.close()


async def aio(bootstrap: str, topic: str) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await prod.start()
    try:
        for i in range(10):
            await prod.send_and_wait(topic, key=str(i % 2).encode(), value=f"aio-{i}".encode())
    finally:
        await prod.stop()
    cons = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"aio-{topic}",
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await cons.start()
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < 20 and time.monotonic() < deadline:
            batch = await cons.getmany(timeout_ms=1000)
            for msgs in batch.values():
                got.extend(m.value for m in msgs)
        await cons.commit()
    finally:
        await cons.stop()
    return got


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092")
