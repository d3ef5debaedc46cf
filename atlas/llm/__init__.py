"""Layer 2, the model runtime: one client stack for every model the pipeline calls.

- `generation`: the `Generator` interface and `HFGenerator`, the one local Hugging Face generator (batched, seeded,
  shared-prefix KV cache, teacher-forced scoring), used for the student, the teacher and local judges alike;
- `openai_client`: the one OpenAI-compatible HTTP client (a served student, OpenAI-compatible judges), and
  `openai_generator`: the `Generator` of a student served that way;
- `gemini`: the Gemini client (google-genai);
- `transport`: the one error type and retry policy (tenacity) every remote client uses;
- `models`: model sources, loading, saving and hashing; `student`: the frozen student of a configuration.

Inference never depends on training: nothing here imports `atlas.training`.
"""
