"""Layer 3, the method: pure functions of text and numbers, and the records they work on.

- `protocol`: the two-pass teaching protocol (prompts, rendering, `<teaching>` extraction, grading, the student's
  baseline and taught answers from any `Generator`);
- `answers` (+ `answer_values`): final-answer extraction and mathematical equivalence;
- `records`: the typed probe record every stage after `probe` reads;
- `rewards`: the non-degradation teaching reward, the likelihood reward, outcome rates;
- `metrics`: a teacher's evaluation metrics from per-problem outcomes; `report`: the markdown table and plots.

No model is loaded here and no file is read except through `records`; torch is never imported.
"""
