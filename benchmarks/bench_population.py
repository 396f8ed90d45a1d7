"""Population training: K runs trained as one model against the same runs one by one.

Three measurements, each a ratio within one run (``python -m benchmarks population``):

1. **Per-run compute on CPU** (one torch thread, process CPU time): the same
   configurations (an lr x beta spread, two seeds each, some diverging as in a real
   study) through ``run_trial`` one after another and through ``run_population`` as
   one population. Cases: the quickstart's MLP (digits, width 64, batch 64, 150
   steps) with each optimizer at K = 32 and K = 128 members; the CNN with BatchNorm
   and ResNet-20 on digits (K = 8 and 32). Also one training step of the MLP and
   the CNN as population layers (batched matmul, grouped convolution) against
   ``torch.func`` (``functional_call`` + ``vmap`` over stacked parameters), which
   is how the population form was chosen.
2. **GPU** (skipped without CUDA): ResNet-20 at CIFAR shapes (3x32x32, batch 128,
   synthetic data on the device), one optimizer step, K in {1, 8, 32}: time per run
   and step of the population against K separate models stepped in turn on the same
   GPU (what K fractional Ray trials give at best, without their processes).
   Timed with CUDA events around many steps; no host sync inside the loop.
3. **The whole quickstart** through ``run_study`` with ``resources.population``
   ``auto`` against ``off``, each in a fresh process with Ray already up (the
   ``warm`` wall of ``bench_engine``), outcomes of the 594 runs compared
   (``compare_outcomes``: each differing run with its distance to its cell's
   stability boundary), and the no-engine pool floor of ``bench_engine``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.compare_outcomes import RUN_KEYS, SHOWN, compare

CPU_CASES = [
    # label, optimizer, model, model_args, steps, eval_every, members
    ("MLP 64 (quickstart), sgd", "sgd", "mlp", {"widths": [64]}, 150, 50, 32),
    ("MLP 64 (quickstart), sgd", "sgd", "mlp", {"widths": [64]}, 150, 50, 128),
    ("MLP 64 (quickstart), insgd", "insgd", "mlp", {"widths": [64]}, 150, 50, 32),
    ("MLP 64 (quickstart), novograd", "novograd", "mlp", {"widths": [64]}, 150, 50, 32),
    ("CNN with BatchNorm, digits", "sgd", "cnn", {"batchnorm": True}, 50, 25, 8),
    ("CNN with BatchNorm, digits", "sgd", "cnn", {"batchnorm": True}, 50, 25, 32),
    ("ResNet-20, digits", "sgd", "resnet20", {}, 20, 10, 8),
]


def _configs(optimizer: str, model: str, model_args: dict, steps: int, every: int, members: int):
    from robustness.runner import TrialConfig

    n = members // 2  # two seeds each
    lrs = torch.logspace(-3, 1, n).tolist()
    return [
        TrialConfig(
            optimizer=optimizer,
            lr=lr,
            beta=(0.0, 0.5, 0.9)[i % 3],
            model=model,
            model_args=model_args,
            batch_size=64,
            steps=steps,
            eval_every=every,
            seeds=(0, 1),
            device="cpu",
            threads=1,
        )
        for i, lr in enumerate(lrs)
    ]


def _cpu_case(optimizer, model, model_args, steps, every, members) -> tuple[float, float, int]:
    """CPU seconds per run: sequential, population; and how many runs agree in outcome."""
    from robustness.runner import run_population, run_trial

    configs = _configs(optimizer, model, model_args, steps, every, members)
    run_trial(configs[0])  # first-call costs (imports, dataset parse)
    run_population(configs[:2])
    start = time.process_time()
    sequential = [run_trial(c) for c in configs]
    seq = (time.process_time() - start) / members
    start = time.process_time()
    population = run_population(configs)
    pop = (time.process_time() - start) / members
    same = sum(
        a["outcome"] == b["outcome"]
        for p, s in zip(population, sequential, strict=True)
        for a, b in zip(p.records, s.records, strict=True)
    )
    return seq, pop, same


def _step_layers_vs_vmap(model: str, model_args: dict, shape, members: int) -> tuple[float, float]:
    """Seconds per training step (forward, backward) of K members: population layers
    vs torch.func.functional_call under vmap."""
    from torch.func import functional_call, stack_module_state, vmap

    from robustness.models import build_model
    from robustness.models.population import population_model

    models = [build_model(model, shape, 10, **model_args) for _ in range(members)]
    population = population_model(models).train()
    params, buffers = stack_module_state(models)
    base = build_model(model, shape, 10, **model_args).to("meta")
    x = torch.randn(members, 64, *shape)
    y = torch.randint(0, 10, (members, 64))

    def layers_step():
        out = population(x)
        torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten()).backward()

    def one(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return torch.nn.functional.cross_entropy(out, yb)

    def vmap_step():
        vmap(one, randomness="different")(params, buffers, x, y).sum().backward()

    times = []
    for step in (layers_step, vmap_step):
        step()
        start = time.process_time()
        for _ in range(10):
            step()
        times.append((time.process_time() - start) / 10)
    return times[0], times[1]


def _gpu_section() -> None:
    if not torch.cuda.is_available():
        print("\nGPU: no CUDA device here; run this benchmark on a GPU machine.")
        return
    print(
        "\n| ResNet-20, 3x32x32, batch 128, one GPU | K | population ms/run/step | "
        "K separate models ms/run/step | speedup |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for members in (1, 8, 32):
        population, separate = _gpu_case(members)
        print(f"| | {members} | {population:.2f} | {separate:.2f} | {separate / population:.1f}x |")


def _gpu_case(members: int, steps: int = 30) -> tuple[float, float]:
    """Milliseconds per run and step: the population, and K separate models in turn."""
    from robustness.models import build_model
    from robustness.models.population import population_model
    from robustness.optim import build_optimizer
    from robustness.optim.population import build_population_optimizer

    device = torch.device("cuda")
    models = [build_model("resnet20", (3, 32, 32), 10).to(device) for _ in range(members)]
    optimizers = [build_optimizer("sgd", m, lr=0.1, beta=0.9) for m in models]
    population = population_model(models).train()
    pop_opt = build_population_optimizer("sgd", population, optimizers)
    x = torch.randn(members, 128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (members, 128), device=device)
    cross_entropy = torch.nn.functional.cross_entropy

    def population_step():
        out = population(x)
        losses = cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
        pop_opt.zero_grad(set_to_none=True)
        losses.view(members, -1).mean(1).sum().backward()
        pop_opt.step()

    def separate_step():
        for k, (model, opt) in enumerate(zip(models, optimizers, strict=True)):
            loss = cross_entropy(model(x[k]), y[k])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    timings = []
    for step in (population_step, separate_step):
        for _ in range(3):
            step()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
        timings.append(begin.elapsed_time(end) / steps / members)
    return timings[0], timings[1]


def _study_run(population: str) -> dict:
    """The quickstart through run_study with ``resources.population`` set (Ray up)."""
    import yaml

    from robustness.engine import _cluster, run_study
    from robustness.spec import make_plan, parse_spec

    text = Path(__file__).parents[1].joinpath("robustness/studies/quickstart.yaml").read_text()
    study = yaml.safe_load(text)
    study.setdefault("resources", {})["population"] = population
    spec = parse_spec(study)
    make_plan(spec)
    _cluster.connect(None)
    with tempfile.TemporaryDirectory(prefix="bench_population_") as tmp:
        start = time.perf_counter()
        out = run_study(spec, Path(tmp) / "out", progress=False, report=False)
        warm = time.perf_counter() - start
        trials = pd.read_parquet(out / "trials.parquet")
    runs = json.loads(trials[RUN_KEYS + SHOWN].to_json(orient="records", double_precision=15))
    return {"warm": warm, "compute": float(trials["wall_seconds"].sum()), "runs": runs}


def _in_fresh_process(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_population", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pool_floor() -> float:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_engine", "quickstart", "pool"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["warm"]


def main() -> None:
    torch.set_num_threads(1)
    print("| case | K | sequential ms/run | population ms/run | speedup | same outcome |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, optimizer, model, model_args, steps, every, members in CPU_CASES:
        seq, pop, same = _cpu_case(optimizer, model, model_args, steps, every, members)
        print(
            f"| {label}, {steps} steps | {members} | {seq * 1e3:.1f} | {pop * 1e3:.1f} | "
            f"{seq / pop:.1f}x | {same}/{members} |",
            flush=True,
        )
    print("\n| one training step, K = 32 | population layers ms | torch.func vmap ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, model, args, shape in (
        ("MLP 64, batch 64", "mlp", {"widths": [64]}, (64,)),
        ("CNN with BatchNorm, batch 64", "cnn", {"batchnorm": True}, (1, 8, 8)),
    ):
        layers, vmapped = _step_layers_vs_vmap(model, args, shape, 32)
        print(f"| {label} | {layers * 1e3:.1f} | {vmapped * 1e3:.1f} | {vmapped / layers:.1f}x |")
    _gpu_section()
    if os.environ.get("BENCH_POPULATION_STUDY", "1") == "0":
        return
    off = _in_fresh_process("study", "off")
    auto = _in_fresh_process("study", "auto")
    floor = _pool_floor()
    total, same, differences = compare(pd.DataFrame(off["runs"]), pd.DataFrame(auto["runs"]))
    print("\n| quickstart, run_study (Ray up) | wall s | Σ run s | vs off | vs pool floor |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in (("population: off", off), ("population: auto", auto)):
        print(
            f"| {name} | {r['warm']:.1f} | {r['compute']:.1f} | "
            f"{r['warm'] / off['warm']:.2f}x | {r['warm'] / floor:.2f}x |"
        )
    print(f"| pool floor (bench_engine) | {floor:.1f} | | | 1.00x |")
    print(f"\noutcomes identical, auto vs off: {same}/{total}")
    for d in differences:
        print(
            f"- {d.key}: off {d.reference['outcome']}, auto {d.other['outcome']}, "
            f"{d.steps_to_boundary} grid step(s) from the cell's nearest boundary"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "study":
        print(json.dumps(_study_run(sys.argv[2])))
    else:
        main()
