"""The frozen student of a configuration, for every stage that asks it anything (probe, GRPO, evaluation)."""

from __future__ import annotations

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.llm.generation import Generator


def load_student(cfg: AtlasConfig) -> Generator:
    """A local `HFGenerator` on the materialized student, or an `OpenAIGenerator` when
    `models.student_endpoint.base_url` is set (the tokenizer then comes from the materialized student folder).
    Sets the torch threads and seeds the protocol's seed first."""
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import load_tokenizer, resolve_device, setup_torch

    setup_torch(cfg.models.num_threads, cfg.protocol.seed)
    folder = paths.MODELS_DIR / "student"
    endpoint = cfg.models.student_endpoint
    if endpoint.base_url:
        from atlas.llm.openai_generator import OpenAIGenerator

        return OpenAIGenerator(
            endpoint.base_url,
            endpoint.model,
            api_key_env=endpoint.api_key_env,
            max_concurrency=endpoint.max_concurrency,
            timeout=endpoint.timeout,
            max_retries=endpoint.max_retries,
            tokenizer=load_tokenizer(folder, cfg.models.student.trust_remote_code),
        )
    device = resolve_device(cfg.models.device)
    return HFGenerator.from_path(folder, cfg.models.student, device, cfg.protocol.batch_size, name="student")
