"""The one patch of a TRL internal (`atlas.training.trl_compat.score_completions_only`): on a tiny model, SFT with and
without it gives the same losses step by step, it really scores fewer positions, and the original is restored."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from atlas.training.trl_compat import PINNED_TRL, score_completions_only

ROWS = [
    {"prompt": [{"role": "user", "content": f"How many pens are {a} pens and {a + 2} pens?"}],
     "completion": [{"role": "assistant", "content": f"<thinking>Add them.</thinking><teaching>Add {a} and {a + 2}."
                     "</teaching>"}]}
    for a in range(2, 10)
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from atlas.llm.models import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "teacher", seed=1)


def _train(tiny_dir, tmp_path, monkeypatch, patched: bool) -> tuple[list[float], list[int], bool]:
    """SFT losses per step, the number of positions each fused LM-head call scored, and whether the patch applied."""
    import torch
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from atlas.config import ModelSpec
    from atlas.llm.models import load_causal_lm, load_tokenizer

    scored: list[int] = []
    real = trl_utils._ChunkedLogProbFunction

    class Counting:
        @staticmethod
        def apply(hidden, *args):
            scored.append(int(hidden.shape[0]))
            return real.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    torch.manual_seed(0)
    args = SFTConfig(
        output_dir=str(tmp_path / ("patched" if patched else "plain")),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_length=128,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    model = load_causal_lm(tiny_dir, ModelSpec(source="tiny"))
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(ROWS), processing_class=load_tokenizer(tiny_dir)
    )
    with score_completions_only("cpu") if patched else nullcontext(False) as applied:
        trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], scored, applied


def test_completion_only_scoring_gives_the_same_losses(tiny_dir, tmp_path, monkeypatch):
    import torch
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    plain, plain_scored, _ = _train(tiny_dir, tmp_path, monkeypatch, patched=False)
    patched, patched_scored, applied = _train(tiny_dir, tmp_path, monkeypatch, patched=True)
    assert applied and len(plain) == len(patched) == 4
    assert patched == plain  # step by step, bit for bit
    assert sum(patched_scored) < sum(plain_scored)  # the prompt positions were really skipped
    assert trl_utils._use_triton is original and not trl_utils._use_triton(torch.device("cpu"))  # restored


def test_the_patch_stays_off_elsewhere(monkeypatch):
    import trl
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    with score_completions_only("cuda") as applied:
        assert not applied and trl_utils._use_triton is original
    monkeypatch.setattr(trl, "__version__", "9.9.9")
    with score_completions_only("cpu") as applied:
        assert not applied and trl_utils._use_triton is original
    monkeypatch.setattr(trl, "__version__", PINNED_TRL)
    with pytest.raises(RuntimeError), score_completions_only("cpu") as applied:
        assert applied and trl_utils._use_triton is not original
        raise RuntimeError("a failed step")
    assert trl_utils._use_triton is original  # restored on the way out of a failure too
