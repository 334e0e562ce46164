"""Training steps per second of the default molecule model on this CPU: float32 against bf16 autocast, one
thread against two, on the machine as found and with one more core kept busy by another process.

Each configuration times the same length-grouped batches of shipped MOSES molecules (batch 128, Adam, the
default ``architecture="cpu"`` model); configurations alternate over ``--rounds`` rounds so that drifts of the
machine hit them alike, and the median per configuration is reported. The busy core is a second Python process
spinning in a loop.

Usage, from the repository root (on an idle machine for absolute figures; on a busy one the ratios between the
alternating configurations still hold, and the load average before and after is recorded)::

    python -m benchmarks.molecules.step_speed

Writes ``benchmarks/molecules/results/step_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

import numpy as np
import torch

from benchmarks.molecules.data import RESULTS, machine


def _spin(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def _batches(vae, n: int, batch_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    x, lengths = vae._arrays["x"], vae._arrays["length"]
    rng = np.random.default_rng(seed)
    order = np.argsort(lengths + rng.uniform(0, 1, len(lengths)), kind="stable")  # similar lengths together
    starts = rng.choice(len(order) // batch_size, n, replace=False) * batch_size
    out = []
    for s in starts:
        idx = order[s : s + batch_size]
        t = int(lengths[idx].max())
        out.append({"x": torch.as_tensor(x[idx, :t]), "length": torch.as_tensor(lengths[idx])})
    return out


def time_steps(vae, batches, precision: str, threads: int) -> float:
    """Seconds per training step (forward, backward, Adam) over ``batches`` after two warm-up steps."""
    torch.set_num_threads(threads)
    module = vae.module
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-4, fused=True)

    def step(batch) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            out = module.loss(batch, kl_weight=0.2)
        out.loss.backward()
        opt.step()

    for b in batches[:2]:
        step(b)
    t0 = time.perf_counter()
    for b in batches[2:]:
        step(b)
    return (time.perf_counter() - t0) / (len(batches) - 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=22)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    p.add_argument("--no-busy-core", action="store_true", help="skip the configurations with a core kept busy")
    p.add_argument("--out", default=str(RESULTS / "step_speed.json"))
    args = p.parse_args()
    from scivae.core.train.precision import cpu_native_bf16
    from scivae.datasets import moses
    from scivae.molecules import MolVAE

    vae = MolVAE(moses("train", n=20_000, seed=0), architecture="cpu", seed=0)
    before = machine()
    batches = _batches(vae, args.steps, 128, seed=0)
    busy_modes = (False,) if args.no_busy_core else (False, True)
    configs = [(busy, p_, t) for busy in busy_modes for p_ in ("32-true", "bf16-mixed") for t in args.threads]
    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for busy, precision, threads in configs:
            stop, spinner = mp.Event(), None
            if busy:
                spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
                spinner.start()
                time.sleep(0.5)
            try:
                s = time_steps(vae, batches, precision, threads)
            finally:
                if spinner is not None:
                    stop.set()
                    spinner.join()
            key = f"{'plus-busy-core' if busy else 'as-found'}/{precision}/{threads}thread"
            times.setdefault(key, []).append(s)
            print(f"round {r} {key}: {1 / s:.1f} steps/s", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = medians[f"as-found/32-true/{args.threads[0]}thread"]
    record = {
        "command": "python -m benchmarks.molecules.step_speed"
        + (f" --threads {' '.join(map(str, args.threads))}" if args.threads != [1, 2] else "")
        + (" --no-busy-core" if args.no_busy_core else "")
        + (f" --rounds {args.rounds}" if args.rounds != 3 else ""),
        "machine_before": before,
        "machine_after": machine(),
        "cpu_native_bf16": cpu_native_bf16(),
        "model": repr(vae),
        "batch_size": 128,
        "timed_steps_per_run": args.steps - 2,
        "seconds_per_step": times,
        "median_steps_per_s": {k: round(1 / v, 2) for k, v in medians.items()},
        "speedup_vs_as_found_fp32_first_thread_count": {k: round(base / v, 2) for k, v in medians.items()},
    }
    with open(args.out, "w") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["median_steps_per_s"], indent=1))


if __name__ == "__main__":
    main()
