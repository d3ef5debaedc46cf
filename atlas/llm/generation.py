"""Text generation behind one small interface, used by the protocol for every student and teacher call.

A prompt is either a chat (a list of `{"role", "content"}` messages, rendered with the model's chat template) or an
already rendered string (used as-is: this is how the teacher prompt stays byte-identical between GRPO and evaluation).

`HFGenerator` batches Hugging Face `generate` with left padding and seeded sampling, and scores teacher-forced
log-probabilities; it is the one local generator (student, teacher, and the local RIM judge).
`atlas.llm.openai_generator.OpenAIGenerator` has the same interface for a student behind an OpenAI-compatible server.
Both count the sequences they produce (`calls`), so tests can check what was asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from atlas.core.progress import track

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
Prompt = str | Messages


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    truncated: bool


class Generator(Protocol):
    calls: int

    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int,
        temperature: float,
        num_samples: int = 1,
        seed: int = 0,
        desc: str | None = None,
    ) -> list[list[Generation]]: ...


class HFGenerator:
    """Batched generation and scoring with a local transformers model (frozen: always in eval mode, no grad)."""

    def __init__(self, model, tokenizer, batch_size: int = 16, name: str = "model"):
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.batch_size = batch_size
        self.name = name
        self.calls = 0

    @classmethod
    def from_path(cls, path, spec, device: str = "cpu", batch_size: int = 16, name: str = "model") -> HFGenerator:
        from atlas.llm.models import load_causal_lm, load_tokenizer

        tokenizer = load_tokenizer(path, trust_remote_code=spec.trust_remote_code)
        model = load_causal_lm(path, spec, device=device)
        model.eval()
        return cls(model, tokenizer, batch_size=batch_size, name=name)

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int,
        temperature: float,
        num_samples: int = 1,
        seed: int = 0,
        desc: str | None = None,
    ) -> list[list[Generation]]:
        """`num_samples` generations per prompt; greedy when temperature is 0. Deterministic for a given seed."""
        import torch

        texts = [self.render(p) for p in prompts for _ in range(num_samples)]
        flat: list[Generation] = []
        eos = self.tokenizer.eos_token_id
        batches = track(
            range(0, len(texts), self.batch_size),
            desc or f"{self.name}: generate",
            len(texts),
            "sequence",
            size=lambda start: len(texts[start : start + self.batch_size]),
        )
        for index, start in enumerate(batches):
            ids = self._encode(texts[start : start + self.batch_size])
            inputs = self._batch(ids)
            torch.manual_seed(seed * 100_003 + index)
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=inputs.input_ids,
                    attention_mask=inputs.attention_mask,
                    past_key_values=inputs.cache,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=eos,
                    **(sampling if temperature > 0 else {"do_sample": False}),
                )
            new = out[:, inputs.input_ids.shape[1] :]
            for row in new.tolist():
                # generate pads only after a row's eos, so the first eos marks its end
                n = row.index(eos) if eos in row else len(row)
                truncated = eos not in row and n >= max_new_tokens
                text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
                flat.append(Generation(text=text, tokens=n, truncated=truncated))
        self.calls += len(flat)
        return [flat[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

    def logprob(self, prompts: list[Prompt], targets: list[str], desc: str | None = None) -> list[float]:
        """Sum of log p(target tokens | prompt) under teacher forcing: one forward pass per batch, no decoding."""
        import torch

        pairs = [(self.render(p), t) for p, t in zip(prompts, targets, strict=True)]
        scores: list[float] = []
        for start in track(
            range(0, len(pairs), self.batch_size),
            desc or f"{self.name}: score",
            len(pairs),
            "sequence",
            size=lambda start: len(pairs[start : start + self.batch_size]),
        ):
            chunk = pairs[start : start + self.batch_size]
            prompt_ids = self._encode([p for p, _ in chunk])
            target_ids = self._encode([t for _, t in chunk])
            # the cached prefix stops before the last prompt token: every row's target is scored from its own logits
            sequences = [p + t for p, t in zip(prompt_ids, target_ids, strict=True)]
            inputs = self._batch(sequences, max_prefix=min(len(p) for p in prompt_ids) - 1)
            keep = max(len(t) for t in target_ids) + 1  # logits only where a target token is predicted
            with torch.no_grad():
                logits = self.model(
                    input_ids=inputs.input_ids[:, inputs.cached :],
                    attention_mask=inputs.attention_mask,
                    position_ids=inputs.positions[:, inputs.cached :],
                    past_key_values=inputs.cache,
                    logits_to_keep=keep,
                ).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            predicted = inputs.input_ids[:, -keep + 1 :]
            token_logp = logp.gather(-1, predicted.unsqueeze(-1)).squeeze(-1)
            for row, target in zip(token_logp, target_ids, strict=True):
                scores.append(float(row[row.shape[0] - len(target) :].sum()))
        return scores

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def _batch(self, ids: list[list[int]], max_prefix: int | None = None) -> _Batch:
        """One batch as `[shared prefix | left padding | own tokens]` rows.

        Student prompts share their system prompt and worked examples (about 200 of 270 tokens), so the longest
        common token prefix of the batch is run once and its KV cache repeated for every row: the prefill, which
        dominates CPU generation, shrinks about fourfold. The result equals plain left-padded batching up to float
        rounding (positions continue after the prefix; padding is masked out)."""
        import torch

        prefix = _common_prefix(ids) if len(ids) > 1 else 0
        prefix = min(prefix, min(len(x) for x in ids) - 1)  # every row keeps at least one token of its own
        if max_prefix is not None:
            prefix = min(prefix, max_prefix)
        if prefix < MIN_SHARED_PREFIX:
            prefix = 0
        width = max(len(x) for x in ids) - prefix
        pad = self.tokenizer.pad_token_id
        rows = [x[:prefix] + [pad] * (width - len(x) + prefix) + x[prefix:] for x in ids]
        mask = [[1] * prefix + [0] * (width - len(x) + prefix) + [1] * (len(x) - prefix) for x in ids]
        input_ids = torch.tensor(rows, device=self.model.device)
        attention = torch.tensor(mask, device=self.model.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = None
        if prefix:
            with torch.no_grad():
                cache = self.model(input_ids=input_ids[:1, :prefix], use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(ids))
        return _Batch(input_ids, attention, positions, cache, prefix)


MIN_SHARED_PREFIX = 16  # tokens; below this a shared prefix is not worth a separate forward pass


@dataclass
class _Batch:
    input_ids: object  # torch.Tensor [batch, prefix + width]
    attention_mask: object
    positions: object
    cache: object  # the prefix's KV cache repeated per row, or None
    cached: int  # number of leading positions in `cache`


def _common_prefix(ids: list[list[int]]) -> int:
    first = ids[0]
    n = min(len(x) for x in ids)
    for i in range(n):
        token = first[i]
        if any(x[i] != token for x in ids):
            return i
    return n
