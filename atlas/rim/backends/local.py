"""A local Hugging Face causal LM as judge (`provider: transformers`, `model:` a local directory or hub id), run by
`atlas.llm.generation.HFGenerator`, the same generator the student and teacher use.

torch/transformers are imported on first use. Generation runs in a worker thread, one request at a time per process
(a lock), with the chat template when the tokenizer has one; sampling is seeded from the prompt and temperature, so a
given request is reproducible. Loaded models are shared between tiers that name the same path. Note: a timeout
abandons the waiting call, but the generation already running finishes in its thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

from atlas.llm.transport import BackendError, Reply
from atlas.rim.backends.base import Backend, GenerationRequest
from atlas.rim.config import ModelSettings

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], Any] = {}


def _generator(path: str, device: str) -> Any:
    key = (path, device)
    if key not in _LOADED:
        from atlas.llm.generation import HFGenerator
        from atlas.llm.models import pretrained_causal_lm, pretrained_tokenizer

        try:
            tokenizer = pretrained_tokenizer(path)
            model = pretrained_causal_lm(path, device=device)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load judge model {path!r}: {exc}", retryable=False) from None
        model.eval()
        _LOADED[key] = HFGenerator(model, tokenizer, batch_size=1, name="judge")
    return _LOADED[key]


def request_seed(request: GenerationRequest) -> int:
    """A seed fixed by the prompt and the temperature: the same request samples the same reply."""
    material = f"{request.prompt}\x00{request.temperature:.4f}".encode()
    return int(hashlib.sha256(material).hexdigest()[:8], 16)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings.model)
        self.device = settings.device

    async def generate(self, request: GenerationRequest) -> Reply:
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: GenerationRequest) -> Reply:
        with _LOCK:
            generator = _generator(self.model, self.device)
            chat = bool(getattr(generator.tokenizer, "chat_template", None))
            prompt = [{"role": "user", "content": request.prompt}] if chat else request.prompt
            [[reply]] = generator.generate(
                [prompt],
                max_new_tokens=request.max_output_tokens,
                temperature=request.temperature,
                seed=request_seed(request),
                desc="judge: generate",
            )
            prompt_tokens = generator.count_tokens(generator.render(prompt))
        return Reply(text=reply.text, input_tokens=prompt_tokens, output_tokens=reply.tokens)
