"""Student generation throughput on this machine: one prompt at a time vs batched `HFGenerator.generate`.

Every prompt is a real few-shot student prompt (`atlas.protocol.student_messages`) on a simple synthetic word
problem. Decoding is greedy and every sequence produces exactly `--new-tokens` tokens (end-of-sequence is suppressed
until then via `generation_config.min_new_tokens`), so each batch size does the same work. The table reports wall
time, generated tokens per second and the speed-up over batch size 1 in the same dtype, plus how many greedy outputs
are identical to the batch-size-1 ones (left padding should not change them; low-precision numerics can).

    .venv/bin/python benchmarks/generation_throughput.py                      # data/models/student, or a tiny model
    .venv/bin/python benchmarks/generation_throughput.py --model DIR --prompts 16 --new-tokens 32 --bf16
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STUDENT = REPO / "data" / "models" / "student"

_TEMPLATES = [
    "{name} has {a} apples and buys {b} more. How many apples does {name} have now?",
    "A box holds {a} pens. {name} takes out {c} pens. How many pens are left in the box?",
    "{name} buys {b} notebooks at {c} dollars each. How much does {name} pay in total?",
    "A road is {a}0 meters long. Trees stand every 10 meters along it. How many gaps are there between the trees?",
    "{name} reads {c} pages every day for {b} days. How many pages does {name} read?",
    "A shop sells {a} cakes in the morning and {b} cakes in the afternoon. How many cakes does it sell in all?",
]
_NAMES = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana"]


def synthetic_problems(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        a, b = rng.randint(12, 60), rng.randint(2, 9)
        c = rng.randint(2, min(a - 1, 11))
        problems.append(_TEMPLATES[i % len(_TEMPLATES)].format(name=rng.choice(_NAMES), a=a, b=b, c=c))
    return problems


def resolve_model_dir(requested: str | None, scratch: Path) -> tuple[Path, str]:
    """The model to measure and a one-line description of where it came from."""
    if requested:
        return Path(requested), f"{requested} (--model)"
    if (DEFAULT_STUDENT / "config.json").exists() or (DEFAULT_STUDENT / "source.json").exists():
        return DEFAULT_STUDENT, f"{DEFAULT_STUDENT.relative_to(REPO)} (the converted student)"
    from atlas.config import ModelSpec
    from atlas.llm.models import materialize

    path = materialize(ModelSpec(source="tiny", seed=2), scratch / "tiny")
    return path, f"a random tiny Qwen3 built in {path} ({DEFAULT_STUDENT.relative_to(REPO)} does not exist)"


def machine_summary() -> list[str]:
    import torch

    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [
        f"machine: {platform.machine()} {platform.processor() or ''}".rstrip(),
        f"cores: {cores} (usable by this process: {usable}); torch threads: {torch.get_num_threads()}",
        f"python {platform.python_version()}, torch {torch.__version__}; load average (1/5/15 min): {load}",
    ]


TABLE_HEADER = [
    "| dtype | batch | sequences | new tokens | seconds | tokens/s | speed-up | same as batch 1 |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]


def run_dtype(model_dir: Path, dtype: str, prompts: list, new_tokens: int, batch_sizes: list[int]) -> list[dict]:
    """Time every batch size for one dtype, printing each table row as soon as it is measured."""
    from atlas.config import ModelSpec
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, ModelSpec(dtype=dtype))
    model.eval()
    HFGenerator(model, tokenizer, batch_size=1).generate(prompts[:1], max_new_tokens=2, temperature=0.0)  # warm-up
    model.generation_config.min_new_tokens = new_tokens  # same work for every batch size
    rows: list[dict] = []
    reference: list[str] = []
    for batch_size in batch_sizes:
        generator = HFGenerator(model, tokenizer, batch_size=batch_size, name=f"bs{batch_size}")
        start = time.perf_counter()
        out = generator.generate(prompts, max_new_tokens=new_tokens, temperature=0.0)
        seconds = time.perf_counter() - start
        texts = [samples[0].text for samples in out]
        reference = reference or texts
        tokens = sum(samples[0].tokens for samples in out)
        row = {"dtype": dtype, "batch": batch_size, "sequences": len(out), "tokens": tokens, "seconds": seconds}
        row["tokens_per_s"] = tokens / seconds
        row["speedup"] = row["tokens_per_s"] / (rows[0]["tokens_per_s"] if rows else row["tokens_per_s"])
        row["same"] = sum(a == b for a, b in zip(texts, reference, strict=True))
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    return (
        f"| {r['dtype']} | {r['batch']} | {r['sequences']} | {r['tokens']} | {r['seconds']:.1f} | "
        f"{r['tokens_per_s']:.1f} | {r['speedup']:.2f}x | {r['same']}/{r['sequences']} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: data/models/student, else a tiny random model)")
    parser.add_argument("--prompts", type=int, default=16, help="number of student prompts (default 16)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt (default 32)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16], help="first one is the baseline")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 weights")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.new_tokens < 1 or min(args.batch_sizes) < 1:
        parser.error("--prompts, --new-tokens and --batch-sizes must be positive")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import load_tokenizer
    from atlas.teaching.protocol import student_messages

    with tempfile.TemporaryDirectory(prefix="atlas-bench-") as scratch:
        model_dir, origin = resolve_model_dir(args.model, Path(scratch))
        tokenizer = load_tokenizer(model_dir)
        prompts = [student_messages(p) for p in synthetic_problems(args.prompts)]
        renderer = HFGenerator(None, tokenizer)
        lengths = [renderer.count_tokens(renderer.render(p)) for p in prompts]
        print(f"model: {origin}")
        print(*machine_summary(), sep="\n")
        print(
            f"workload: {len(prompts)} few-shot student prompts ({min(lengths)}-{max(lengths)} tokens, "
            f"mean {sum(lengths) / len(lengths):.0f}) x {args.new_tokens} new tokens, greedy"
        )
        print(*TABLE_HEADER, sep="\n", flush=True)
        for dtype in ["float32", "bfloat16"] if args.bf16 else ["float32"]:
            run_dtype(model_dir, dtype, prompts, args.new_tokens, args.batch_sizes)
        print(machine_summary()[-1].split("; ")[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
