"""Training throughput of SessionTransformer (sequences/s) on CPU and, when present, CUDA.

    python -m serving.offline.bench_train                      # fixed config, prints one JSON object
    python -m serving.offline.bench_train --devices cpu --steps 20

Fixed workload: random full-length sequences (every one of the max_len positions is a real
interaction and a training target), full-softmax CE over the catalogue, AdamW step; bf16
autocast on CUDA, fp32 on CPU. Warm-up steps are not timed. The model and batch size default
to the training defaults (serving.offline.train.TrainConfig).
"""
from __future__ import annotations

import json
import platform
import time

import torch
import typer

from serving.model.transformer import ModelConfig, SessionTransformer
from serving.offline.train import TrainConfig

DEFAULT = TrainConfig()
cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


def bench(device: str, cfg: ModelConfig, batch_size: int, steps: int, warmup: int, seed: int = 0) -> dict:
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = SessionTransformer(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, cfg.n_items + 1, (batch_size, cfg.max_len + 1), generator=g)
    types = torch.randint(1, 5, (batch_size, cfg.max_len), generator=g)
    x, ty, y = seqs[:, :-1].to(dev), types.to(dev), seqs[:, 1:].to(dev)
    bf16 = dev.type == "cuda"

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(x, ty, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"sequences_per_s": round(steps * batch_size / dt, 1),
           "positions_per_s": round(steps * batch_size * cfg.max_len / dt, 1),
           "step_ms": round(1000 * dt / steps, 2), "steps": steps,
           "precision": "bf16-autocast" if bf16 else "fp32"}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    else:
        out["threads"] = torch.get_num_threads()
    return out


@cli.command()
def main(
    devices: str = typer.Option("cpu,cuda", help="comma list; cuda is skipped when unavailable"),
    n_items: int = typer.Option(20_000, help="catalogue size (softmax width)"),
    max_len: int = typer.Option(DEFAULT.max_len),
    d_model: int = typer.Option(DEFAULT.d_model),
    n_layers: int = typer.Option(DEFAULT.n_layers),
    n_heads: int = typer.Option(DEFAULT.n_heads),
    batch_size: int = typer.Option(DEFAULT.batch_size),
    steps: int = typer.Option(20, help="timed steps per device (CUDA runs 10x as many)"),
    warmup: int = typer.Option(3),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch default)"),
) -> None:
    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(max_len=max_len, d_model=d_model, n_layers=n_layers, n_heads=n_heads).model_config(n_items, 0)
    result: dict = {"config": cfg.to_dict() | {"batch_size": batch_size}, "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine()}
    for d in [s.strip() for s in devices.split(",") if s.strip()]:
        if d == "cuda" and not torch.cuda.is_available():
            result["cuda"] = None
            continue
        result[d] = bench(d, cfg, batch_size, steps * (10 if d == "cuda" else 1), warmup * (10 if d == "cuda" else 1))
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
