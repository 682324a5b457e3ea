"""Retrain on what shoppers did recently; publish the candidate only if it is not worse.

    python -m serving.retrain --from-beginning                        # all the events topic retains
    python -m serving.retrain --since 2026-11-26T08:00:00Z --dry-run   # or --since <epoch ms>
    python -m serving.retrain --events-file events.jsonl --mode scratch
    python -m serving.rollback                                         # undo the last publication

1. Events: the events topic, read without a consumer group from ``--since`` (found with
   offsets_for_times) or from the beginning, up to the end offsets taken at start; or a JSONL
   file of events. Every message goes through ``contract.messages.parse_event``: invalid ones are
   counted and skipped (the worker has dead-lettered them), a repeated event id is kept once
   (producers retry).
2. Sessions: events grouped by session, ordered by ts, then by position in the log.
3. Split by time: sessions ordered by their last event; the latest ``--holdout-fraction`` of them
   are the held-out window, the candidate trains on the rest.
4. Candidate: ``--mode warm`` starts from the serving model: its architecture, its catalogue with
   the new items of the training part appended (known rows copied by id, new rows initialised as
   the model initialises them), trained for a few epochs by serving.offline.train. ``--mode
   scratch`` trains the same architecture from nothing, on the stream's items only.
5. Gate: one seeded evaluator (serving.offline.evaluate: sampled100, full and served) scores both
   models on every next event of the held-out sessions (at most ``--max-eval-sessions``, a seeded
   sample), in the candidate's item space. The serving model scores items it never saw -inf and
   drops them from histories, as the Triton backend does. The candidate is published when its
   served NDCG@10 is at least the serving model's minus ``--margin``. Served, because it is what
   the worker shows (every item but the one on screen). Under full ranking a target that repeats
   the history competes only with items outside it, which an untrained copy head (ModelConfig's
   default) wins for free: it can beat a trained model on full NDCG@10 and lose to it on served
   (docs/results.md, "Retrain gate", has the figures). Every next event rather
   than each session's last: the worker recommends after every event, and synthetic last events
   are mostly purchases of carted items. A window with fewer than ``--min-holdout`` evaluated
   sessions is refused (NDCG@10 moves too much between such small samples). With no version in
   the repository, ``--first`` publishes the candidate ungated.
6. Every decision is printed and appended as one JSON line to RECO_RUN_DIR/retrain/decisions.jsonl;
   a published candidate becomes a new version in RECO_MODEL_REPO, which Triton serves after its
   next repository poll (5 s).

Privacy: session and user ids stay in memory (sessions are renumbered once grouped); the files
written are the model version (config, weights, item and category ids) and the decision (counts
and scores).
"""
from __future__ import annotations

import json
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
import typer

from contract.messages import Event, InvalidEvent, parse_event
from contract.settings import Settings, get_settings
from serving.model.artifacts import Vocab, expanded, load_model_dir
from serving.model.sessions import Interaction, Session
from serving.model.transformer import SessionTransformer
from serving.offline.evaluate import Scored, Scorer, model_scorer, score_eval_set, summarize_scored
from serving.offline.sequences import EvalSet, encode
from serving.offline.tradeoff import ndcg_gains
from serving.offline.train import Log, TrainConfig, TrainResult, train_model
from serving.online.export import export_model, retired_dir, versions

Position = tuple[int, int]  # (partition, offset) on the topic; (0, line number) in a file
PROTOCOLS = ("sampled100", "full", "served")
GATE = ("served", "ndcg@10")  # protocol, metric


# ----------------------------------------------------------------------------- reading events
def read_jsonl(path: Path) -> Iterator[tuple[Position, bytes]]:
    """Each non-blank line of a JSONL file of events, with its line number."""
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh):
            if line.strip():
                yield (0, line_no), line


def read_topic(consumer: Any, topic: str, since_ms: int | None, stall_s: float = 30.0
               ) -> Iterator[tuple[Position, bytes | None]]:
    """Every record of ``topic`` from ``since_ms`` (None: the beginning) up to the end offsets at
    the call; what is produced meanwhile is left for the next run. ``consumer`` is a KafkaConsumer
    with no group (nothing is committed). Raises TimeoutError when no record arrives for
    ``stall_s`` while some are still due."""
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ValueError(f"topic {topic!r} does not exist")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    end = consumer.end_offsets(assigned)
    if since_ms is None:
        consumer.seek_to_beginning(*assigned)
    else:
        found = consumer.offsets_for_times({tp: since_ms for tp in assigned})
        for tp in assigned:  # None: nothing that recent on this partition
            consumer.seek(tp, end[tp] if found.get(tp) is None else found[tp].offset)
    pending = {tp for tp in assigned if consumer.position(tp) < end[tp]}
    last_record = time.monotonic()
    while pending:
        batch = consumer.poll(timeout_ms=500)
        for tp, records in batch.items():
            for record in records:
                if record.offset < end[tp]:
                    yield (tp.partition, record.offset), record.value
        if batch:
            last_record = time.monotonic()
        elif time.monotonic() - last_record > stall_s:
            raise TimeoutError(f"no record for {stall_s:.0f}s with {len(pending)} partition(s) of {topic!r} "
                               "short of their end offsets")
        done = {tp for tp in pending if consumer.position(tp) >= end[tp]}
        if done:
            consumer.pause(*done)
            pending -= done


def parse_since(text: str) -> int:
    """Epoch milliseconds from epoch ms digits or ISO 8601 (without a zone: UTC)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"--since {text!r} is neither epoch milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


@dataclass
class Parsed:
    events: list[tuple[Position, Event]] = field(default_factory=list)
    invalid: Counter[str] = field(default_factory=Counter)  # by dead-letter reason
    duplicates: int = 0


def parse_messages(messages: Iterable[tuple[Position, bytes | None]], max_bytes: int) -> Parsed:
    """Valid events, first delivery of each event id only; invalid messages counted by reason."""
    out = Parsed()
    seen: set[str] = set()
    for position, raw in messages:
        try:
            event = parse_event(raw or b"", max_bytes)  # a tombstone (None) is not an event
        except InvalidEvent as invalid:
            out.invalid[invalid.reason] += 1
            continue
        if event.event_id in seen:
            out.duplicates += 1
            continue
        seen.add(event.event_id)
        out.events.append((position, event))
    return out


def build_sessions(events: Iterable[tuple[Position, Event]]) -> list[Session]:
    """One Session per session id, interactions ordered by (ts, position in the log), numbered by
    first appearance: training needs neither the session's id nor the user's, so neither is kept."""
    grouped: dict[str, list[tuple[int, Position, Event]]] = defaultdict(list)
    for position, event in events:
        grouped[event.session_id].append((event.ts, position, event))
    return [Session(session_id=str(n), user_id=None,
                    interactions=[Interaction(e.item_id, e.event_type, e.ts, e.category_id, e.price)
                                  for _, _, e in sorted(rows, key=lambda row: row[:2])])
            for n, rows in enumerate(grouped.values(), 1)]


def split_by_time(sessions: list[Session], holdout_fraction: float) -> tuple[list[Session], list[Session]]:
    """(training part, held-out window): the latest ``holdout_fraction`` of sessions by last event."""
    by_end = sorted(sessions, key=lambda s: s.interactions[-1].ts)  # stable: ties keep log order
    n_holdout = round(len(by_end) * holdout_fraction)
    return by_end[:len(by_end) - n_holdout], by_end[len(by_end) - n_holdout:]


# ----------------------------------------------------------------------------- evaluation
def in_item_space(model: SessionTransformer, own: Vocab, space: Vocab) -> Scorer:
    """A scorer over ``space``'s item indices for a model indexed by ``own``: items it does not
    know are dropped from the history (as the Triton backend drops them) and scored -inf."""
    to_own = torch.tensor([0] + [own.encode_item(item) for item in space.items], dtype=torch.long)
    score_own = model_scorer(model)

    def score(items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        mapped = to_own[items]
        known = mapped > 0
        left = torch.sort(known.long(), dim=1, stable=True).indices  # dropped positions become left padding
        own_scores = score_own(mapped.gather(1, left), (types * known).gather(1, left))
        return own_scores[:, to_own]  # column 0 of own_scores is -inf: unknown items get it

    # the whole history: the model keeps its last max_len known items itself, as the backend does
    score.max_len = 10**9  # type: ignore[attr-defined]
    return score


def sample(sessions: list[Session], n: int, seed: int) -> list[Session]:
    """At most ``n`` of ``sessions``, a seeded subset in their order."""
    if len(sessions) <= n:
        return sessions
    return [sessions[i] for i in sorted(np.random.default_rng(seed).choice(len(sessions), n, replace=False))]


def next_event_targets(sessions: list[Session], catalogue: Vocab) -> tuple[EvalSet, np.ndarray]:
    """Every interaction after a session's first as a target after the ones before it (the worker
    recommends after every event), and each row's session number (rows of one session are not
    independent)."""
    ev, groups = EvalSet(), []
    for number, session in enumerate(encode(sessions, catalogue)):
        touched = np.unique(session.items)
        for cut in range(1, len(session.items)):
            ev.keys.append(session.key)
            ev.items.append(session.items[:cut])
            ev.types.append(session.types[:cut])
            ev.targets.append(int(session.items[cut]))
            ev.rated.append(touched)
            groups.append(number)
    return ev, np.asarray(groups, dtype=np.int64)


def rounded(metrics: dict[str, dict]) -> dict[str, dict]:
    return {p: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()} for p, m in metrics.items()}


def paired_difference(candidate: Scored, serving: Scored, groups: np.ndarray) -> dict[str, float | None]:
    """Candidate minus serving of the gate metric (mean over targets) and its standard error,
    from the per-session sums (clustered: one session's targets move together)."""
    diff = ndcg_gains(candidate.ranks[GATE[0]]) - ndcg_gains(serving.ranks[GATE[0]])
    if not diff.size:
        return {"mean": None, "se": None}
    sums, sizes = np.bincount(groups, diff), np.bincount(groups)
    mean = diff.mean()
    # ratio estimator over sessions: se of sum(d) / sum(n)
    residual = sums[sizes > 0] - mean * sizes[sizes > 0]
    k = residual.size
    se = float(np.sqrt(k / (k - 1) * (residual ** 2).sum()) / diff.size) if k > 1 else None
    return {"mean": round(float(mean), 4), "se": None if se is None else round(se, 4)}


# ----------------------------------------------------------------------------- the gate
def refusal_before_training(has_serving: bool, first: bool, evaluable: int, trainable: int,
                            min_holdout: int) -> str | None:
    """Why no candidate is worth training, or None."""
    if not has_serving and not first:
        return "no serving version to compare with (--first publishes the first one ungated)"
    if trainable == 0:
        return "no training session with 2 or more interactions"
    if has_serving and evaluable < min_holdout:
        return (f"held-out window too small: {evaluable} sessions of 2+ interactions, "
                f"fewer than --min-holdout {min_holdout}")
    return None


def gate(candidate: float, serving: float | None, margin: float) -> tuple[bool, str]:
    """(publish?, why) from both models' gate metric (serving None: there is no version yet)."""
    name = f"{GATE[0]} {GATE[1]}"
    if serving is None:
        return True, "first version: published without a gate (no serving version to compare with)"
    if candidate >= serving - margin:
        return True, f"candidate {name} {candidate:.4f} >= serving {serving:.4f} - margin {margin}"
    return False, f"candidate {name} {candidate:.4f} < serving {serving:.4f} - margin {margin}"


# ----------------------------------------------------------------------------- one run
Served = tuple[SessionTransformer, Vocab]


def train_candidate(sessions: list[Session], serving: Served | None, mode: str, cfg: TrainConfig, out: Path,
                    log: Log, meta: dict) -> TrainResult:
    if serving is None:
        return train_model(cfg, sessions, out, log=log, meta=meta)
    model, vocab = serving
    if mode == "scratch":
        return train_model(cfg.with_architecture(model.cfg), sessions, out, log=log, meta=meta)
    torch.manual_seed(cfg.seed)  # the new items' rows
    catalogue = vocab.extended(sessions)
    return train_model(cfg, sessions, out, log=log, meta=meta,
                       start=(expanded(model, vocab, catalogue), catalogue))


def compare(candidate: TrainResult, serving: Served | None, sessions: list[Session], seed: int) -> dict[str, Any]:
    """Both models' metrics on every next event of ``sessions`` (one seed: the same negatives and
    tie-breaks), in the candidate's item space, and the paired difference of the gate metric."""
    catalogue = candidate.vocab
    ev, groups = next_event_targets(sessions, catalogue)
    scored = {"candidate": score_eval_set(model_scorer(candidate.model), ev, catalogue.n_items, seed=seed,
                                          protocols=PROTOCOLS)}
    if serving is not None:
        scored["serving"] = score_eval_set(in_item_space(*serving, catalogue), ev, catalogue.n_items, seed=seed,
                                           protocols=PROTOCOLS)
    out: dict[str, Any] = {"evaluated_targets": len(ev)}
    out |= {name: rounded(summarize_scored(s)) for name, s in scored.items()}
    if serving is not None:
        out["difference"] = paired_difference(scored["candidate"], scored["serving"], groups)
    return out


@dataclass(frozen=True)
class RetrainOptions:
    mode: Literal["warm", "scratch"] = "warm"
    holdout_fraction: float = 0.2
    min_holdout: int = 100
    margin: float = 0.0
    first: bool = False
    dry_run: bool = False
    max_eval_sessions: int = 5000  # a seeded sample of the held-out window bounds the scoring time
    serving_dir: Path | None = None  # default: the newest version in the model repository


def record(settings: Settings, decision: dict) -> Path:
    path = settings.run_dir / "retrain" / "decisions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(decision) + "\n")
    return path


def retrain(messages: Iterable[tuple[Position, bytes | None]], settings: Settings, options: RetrainOptions,
            cfg: TrainConfig, source: str, log: Log = print) -> dict:
    """Read, train, evaluate, decide, publish (unless a dry run), record. Returns the decision."""
    target = settings.model_repo / settings.model_name
    held = versions(target)
    serving_version = held[-1] if held else None
    serving_dir = options.serving_dir or (target / str(serving_version) if held else None)
    parsed = parse_messages(messages, settings.max_event_bytes)
    sessions = build_sessions(parsed.events)
    train, holdout = split_by_time(sessions, options.holdout_fraction)
    evaluable = sample([s for s in holdout if len(s) >= 2], options.max_eval_sessions, cfg.seed)
    decision: dict[str, Any] = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "decision": "refused", "reason": "",
        "dry_run": options.dry_run, "mode": options.mode if serving_dir else "scratch", "gate": " ".join(GATE),
        "margin": options.margin, "serving_version": serving_version,
        "serving_dir": None if serving_dir is None else str(serving_dir), "published_version": None,
        "source": source, "events": len(parsed.events), "invalid_events": sum(parsed.invalid.values()),
        "invalid_by_reason": dict(parsed.invalid), "duplicate_events": parsed.duplicates,
        "sessions": len(sessions), "train_sessions": len(train), "holdout_sessions": len(holdout),
        "holdout_from_ts": holdout[0].interactions[-1].ts if holdout else None,
        "evaluated_sessions": len(evaluable)}

    def finish(reason: str) -> dict:
        decision["reason"] = reason
        record(settings, decision)
        log(json.dumps(decision))
        return decision

    refusal = refusal_before_training(serving_dir is not None, options.first, len(evaluable),
                                      sum(len(s) >= 2 for s in train), options.min_holdout)
    if refusal:
        return finish(refusal)
    serving = load_model_dir(serving_dir) if serving_dir is not None else None
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "candidate"
        candidate = train_candidate(train, serving, options.mode, cfg, out, log,
                                    meta={"source": "retrain", "mode": decision["mode"], "warm_from": serving_version,
                                          "catalogue": settings.catalogue})
        summary = candidate.summary
        decision["train"] = {"epochs_run": summary.epochs_run, "best_epoch": summary.best_epoch,
                             "stop": summary.stop, "seconds": summary.train_seconds}
        decision["items"] = candidate.vocab.n_items
        if serving is not None:
            decision["new_items"] = sum(item not in serving[1] for item in candidate.vocab.items)
        decision |= compare(candidate, serving, evaluable, cfg.seed)
        publish, reason = gate(decision["candidate"][GATE[0]][GATE[1]],
                               decision["serving"][GATE[0]][GATE[1]] if serving is not None else None, options.margin)
        if publish and options.dry_run:
            decision["decision"] = "would_publish"
        elif publish:
            decision["published_version"] = export_model(out, settings.model_repo, settings.model_name,
                                                         retired_dir(settings.model_name, settings))
            decision["decision"] = "published"
    return finish(reason)


# ----------------------------------------------------------------------------- CLI
DEFAULT = RetrainOptions()
cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


def open_topic(settings: Settings, since_ms: int | None, stall_s: float) -> Iterator[tuple[Position, bytes | None]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**settings.kafka_client_options("reader"), group_id=None, enable_auto_commit=False,
                             max_partition_fetch_bytes=settings.max_message_bytes)
    try:
        yield from read_topic(consumer, settings.events_topic, since_ms, stall_s)
    finally:
        consumer.close()


@cli.command()
def main(
    events_file: Path = typer.Option(None, help="JSONL file of events instead of the events topic"),
    since: str = typer.Option(None, help="read the events topic from this time: epoch ms or ISO 8601 (UTC "
                                         "without a zone)"),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="read all the events topic retains"),
    mode: str = typer.Option(DEFAULT.mode, help="warm: start from the serving model | scratch"),
    serving: Path = typer.Option(None, help="model directory to compare with and warm-start from "
                                            "(default: the newest version in the model repository)"),
    holdout_fraction: float = typer.Option(DEFAULT.holdout_fraction,
                                           help="share of sessions, the latest by last event, held out"),
    min_holdout: int = typer.Option(DEFAULT.min_holdout, help="fewest evaluated held-out sessions to gate on"),
    max_eval_sessions: int = typer.Option(DEFAULT.max_eval_sessions,
                                          help="held-out sessions scored at most (a seeded sample)"),
    margin: float = typer.Option(DEFAULT.margin, help="publish if candidate served NDCG@10 >= serving's - margin"),
    first: bool = typer.Option(False, "--first", help="with no version in the repository, publish ungated"),
    dry_run: bool = typer.Option(False, "--dry-run", help="evaluate and decide, export nothing"),
    stall_s: float = typer.Option(30.0, help="give up when the topic yields nothing for this long"),
    # TrainConfig fields, by name; a warm start takes the architecture from the serving model
    epochs: int = typer.Option(10),
    max_minutes: float = typer.Option(10.0, help="wall-clock budget for training (<=0: none)"),
    patience: int = typer.Option(3, help="epochs without validation improvement before stopping"),
    lr: float = typer.Option(1e-3),
    batch_size: int = typer.Option(TrainConfig.batch_size),
    device: str = typer.Option(TrainConfig.device, help="auto | cpu | cuda"),
    seed: int = typer.Option(0, help="training, the new rows and the evaluator's negatives and tie-breaks"),
    threads: int = typer.Option(TrainConfig.threads, help="torch CPU threads (0: torch default)"),
) -> None:
    if sum((events_file is not None, since is not None, from_beginning)) != 1:
        raise typer.BadParameter("give exactly one of --events-file, --since, --from-beginning")
    if mode not in ("warm", "scratch"):
        raise typer.BadParameter("--mode must be warm or scratch")
    if not 0.0 < holdout_fraction < 1.0:
        raise typer.BadParameter("--holdout-fraction must be within (0, 1)")
    settings = get_settings()
    cfg = TrainConfig(epochs=epochs, max_minutes=max_minutes, patience=patience, lr=lr, batch_size=batch_size,
                      device=device, seed=seed, threads=threads, test_eval=False)
    options = RetrainOptions(mode="warm" if mode == "warm" else "scratch", holdout_fraction=holdout_fraction,
                             min_holdout=min_holdout, max_eval_sessions=max_eval_sessions, margin=margin,
                             first=first, dry_run=dry_run, serving_dir=serving)
    if events_file is not None:
        messages: Iterable[tuple[Position, bytes | None]] = read_jsonl(events_file)
        source = str(events_file)
    else:
        since_ms = None if from_beginning else parse_since(since)
        messages = open_topic(settings, since_ms, stall_s)
        source = f"topic {settings.events_topic}" + ("" if since_ms is None else f" since {since_ms}")
    decision = retrain(messages, settings, options, cfg, source)
    verdict = decision["decision"]
    if decision["published_version"] is not None:
        verdict = f"published as version {decision['published_version']}"
    typer.echo(f"{verdict}: {decision['reason']}")


if __name__ == "__main__":
    cli()
