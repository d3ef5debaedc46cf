"""The student behind one factory: local weights, or an OpenAI-compatible server when configured."""

from __future__ import annotations

import pytest

from atlas.config import load_config
from atlas.core import paths


def test_student_endpoint_selects_the_http_generator(project):
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import materialize
    from atlas.llm.openai_generator import OpenAIGenerator
    from atlas.llm.student import load_student

    cfg = load_config()
    materialize(cfg.models.student, paths.MODELS_DIR / "student")
    assert isinstance(load_student(cfg), HFGenerator)
    served = load_config(
        overrides=[
            "models.student_endpoint.base_url=http://127.0.0.1:9/v1",
            "models.student_endpoint.max_concurrency=3",
        ]
    )
    student = load_student(served)
    assert isinstance(student, OpenAIGenerator)
    # the tokenizer of the materialized student renders the prompts, exactly as the local generator would
    messages = [{"role": "user", "content": "2 + 3?"}]
    assert student.render(messages) == HFGenerator.from_path(paths.MODELS_DIR / "student", cfg.models.student).render(
        messages
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx512f avx512_bf16 amx_tile", "bfloat16"), ("fpu amx_bf16", "bfloat16"), ("fpu avx2 avx512f", "float32")],
)
def test_dtype_auto_follows_the_cpu_flags(flags, expected, monkeypatch):
    from pathlib import Path

    from atlas.llm import models

    real_read = Path.read_text
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: f"flags\t\t: {flags}\n" if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k),
    )
    assert models.resolved_dtype("auto", "cpu") == expected
    assert models.resolved_dtype("float32", "cpu") == "float32"
    assert models.resolved_dtype("bfloat16", "cpu") == "bfloat16"
