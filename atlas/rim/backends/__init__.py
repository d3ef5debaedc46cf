"""Judge backends behind one async interface (`base.Backend`): the offline rules, a scripted backend for tests, remote
APIs (`remote`: Gemini, OpenAI-compatible) and a local model (`local`), the last two on the clients of `atlas.llm`.
Heavy clients are imported only when chosen."""

from __future__ import annotations

from atlas.core.errors import ConfigError
from atlas.rim.backends.base import Backend, GenerationRequest, JudgeContext
from atlas.rim.config import ModelSettings

__all__ = ["Backend", "GenerationRequest", "JudgeContext", "create_backend"]


def create_backend(settings: ModelSettings, role: str = "small_model") -> Backend:
    """The backend a model section asks for; `role` only names the section in error messages."""
    provider = settings.provider
    if provider == "offline":
        from atlas.rim.backends.offline import OfflineBackend

        return OfflineBackend(settings.model)
    if provider == "gemini":
        from atlas.rim.backends.remote import GeminiBackend

        return GeminiBackend(settings)
    if provider == "openai":
        if not settings.base_url:
            raise ConfigError(f"RIM config key '{role}.base_url' is required for provider 'openai'")
        from atlas.rim.backends.remote import OpenAIBackend

        return OpenAIBackend(settings)
    if provider == "transformers":
        from atlas.rim.backends.local import TransformersBackend

        return TransformersBackend(settings)
    raise ConfigError(f"RIM config key '{role}.provider': unknown provider {provider!r}")
