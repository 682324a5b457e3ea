"""Prometheus metrics of the worker. Names here are what deploy/prometheus and deploy/grafana query."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import Counter, Gauge, Histogram, Info

from contract.vocab import DLQ_REASONS, FALLBACK_REASONS

# Latency buckets from 1 ms to 10 s: covers a Feast call and a slow end-to-end path alike.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_CONSUMED = Counter("reco_events_consumed_total", "Valid events consumed", ["event_type"])
EVENTS_INVALID = Counter("reco_events_invalid_total", "Events sent to the DLQ", ["reason"])
RECOMMENDATIONS_PUBLISHED = Counter("reco_recommendations_published_total", "Recommendation messages published")
FALLBACKS = Counter("reco_fallbacks_total", "Recommendations served by a fallback", ["reason"])
EVENTS_DEFERRED = Counter("reco_events_deferred_total",
                          "Events recommended provisionally while their session could not be read, folded later")
EVENTS_DEFERRED_WAITING = Gauge("reco_events_deferred_waiting", "Deferred events not yet folded")
END_TO_END_LATENCY = Histogram(
    "reco_end_to_end_latency_seconds", "Event ts to recommendation publish", buckets=_LATENCY_BUCKETS
)
STAGE_LATENCY = Histogram(
    "reco_stage_latency_seconds", "Time per pipeline stage and batch",
    ["stage"],  # the Pipeline stage methods, publish and learn (stream/worker.py), write_state (stream/writeback.py)
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram("reco_batch_size", "Events per processed batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
CONSUMER_LAG = Gauge("reco_consumer_lag", "Messages behind the log end", ["topic", "partition"])
LAST_EVENT_TIMESTAMP = Gauge("reco_last_event_timestamp_seconds", "Wall-clock time of the last consumed event")
MODEL_INFO = Info("reco_model", "Model serving the recommendations")
MODEL_CATALOGUE_MISMATCH = Gauge("reco_model_catalogue_mismatch", "1 while the served model was trained on "
                                 "another catalogue than RECO_CATALOGUE (only items seen in the stream are shown)")
CANDIDATES_OFF_CATALOGUE = Counter("reco_candidates_off_catalogue_total", "Model candidates not shown because "
                                   "the model is of another catalogue and the stream never named the item")
TRITON_UP = Gauge("reco_triton_up", "1 when the last Triton call succeeded")
BATCH_RETRIES = Counter("reco_batch_retries_total", "Batches run again after a dependency failed", ["error"])
WORKER_RESTARTS = Gauge("reco_worker_restarts", "Times stream/supervisor.py started this worker's process again")
AGENT_CRASHES = Counter("reco_agent_crashes_total", "Times the recommend agent raised (Faust restarts it)")
# Exposure since the worker started (stream/live_exposure.py): every recommended slot, and its spread over the items.
EXPOSURE_SLOTS = Counter("reco_exposure_slots_total", "Recommended slots by the item's popularity: head = the top 20% "
                         "of items by the worker's interaction counts, long = the rest", ["tail"])
EXPOSURE_GINI = Gauge("reco_exposure_gini", "Gini coefficient of recommended slots per item since start, over every "
                      "item the worker knows (never recommended: 0)")
EXPOSURE_COVERAGE = Gauge("reco_exposure_coverage_items", "Distinct items recommended since start")
EXPOSURE_CATALOGUE = Gauge("reco_exposure_catalogue_items", "Items the worker knows (seen in an event or "
                           "recommended): the population of reco_exposure_gini")
FEATURE_FRESHNESS = Histogram(
    "reco_feature_freshness_seconds", "From a batch's publication to the write of its state into Feast",
    buckets=_LATENCY_BUCKETS,
)
FEATURE_WRITE_FAILURES = Counter("reco_feature_write_failures_total", "Background Feast writes that failed", ["error"])
TALLY_FORWARD_FAILURES = Counter("reco_tally_forward_failures_total", "Forwards of tallies to the counters' owners "
                                 "that failed (sent again at the next commit)", ["error"])
STATE_ENTRIES = Gauge("reco_state_entries", "Sessions, items and users held in the worker's memory")
# Online feedback (features/feedback.py): hit rate per version = attributed / recommendations.
RECOMMENDATIONS_BY_VERSION = Counter("reco_recommendations", "Recommendation messages for new events (not "
                                     "redeliveries), by the model version that ranked them", ["model_version"])
ATTRIBUTED_EVENTS = Counter("reco_attributed_events", "Events on an item recommended to their session shortly "
                            "before (RECO_ATTRIBUTION_*), by the version and rank of that recommendation",
                            ["event_type", "model_version", "rank_bucket"])
# Its exact ranks summed as 1/rank: the mean reciprocal rank per version is this over the
# recommendations, which the rank buckets alone cannot give.
ATTRIBUTED_RECIPROCAL_RANK = Counter("reco_attributed_reciprocal_rank", "Sum of 1/rank over the attributed events, "
                                     "by event type and model version", ["event_type", "model_version"])
TALLIES = Counter("reco_tallies_total", "Events counted into item and user counters (stream/counters.py); "
                  "repeated: a redelivered event skipped, so each event counts once", ["counter", "outcome"])
ERASURES = Counter("reco_erasures_total", "Erasure requests carried out (features.erase)")


@contextmanager
def timed(stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_LATENCY.labels(stage).observe(time.perf_counter() - start)


def initialise_labels() -> None:
    """Export every reason at zero from the start, so dashboards and rate() see a series before the
    first bad event or fallback happens."""
    for dlq_reason in DLQ_REASONS:
        EVENTS_INVALID.labels(dlq_reason)
    for fallback_reason in FALLBACK_REASONS:
        FALLBACKS.labels(fallback_reason)
    for tail in ("head", "long"):
        EXPOSURE_SLOTS.labels(tail)
    for counter in ("item", "user"):
        for outcome in ("counted", "repeated"):
            TALLIES.labels(counter, outcome)
