"""Reports a person would rather look at than read: a markdown summary of the teachers side by side, and PNG plots.

Input is the content of reports/eval.json (`atlas.teaching.metrics.evaluate_all`) or a metric history from MLflow.
Plots use matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas) imported inside the functions: no pyplot
global state, no GUI backend, nothing heavy at import. Every file is written atomically (`atlas.core.io.atomic_path`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atlas.core.errors import InputError
from atlas.core.io import atomic_path

TEACHER_ORDER = ("none", "rule", "sft", "grpo", "champion")  # "champion": the gate's table with the champion
TEACHER_LABELS = {
    "none": "student alone",
    "rule": "hand-rule teacher",
    "sft": "SFT teacher",
    "grpo": "GRPO teacher",
    "champion": "champion",
}
TEACHER_COLORS = {"none": "#8c8c8c", "rule": "#937860", "sft": "#4c72b0", "grpo": "#dd8452", "champion": "#55a868"}
_EXTRA_COLORS = ("#c44e52", "#8172b3", "#937860", "#da8bc3", "#64b5cd")
MISSING = "–"


def _teachers(eval_json: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    teachers = eval_json.get("teachers") if isinstance(eval_json, Mapping) else None
    if not isinstance(teachers, Mapping) or not teachers:
        raise InputError("evaluation report: field 'teachers' must be a non-empty object of teacher -> metrics")
    for name, entry in teachers.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("overall"), Mapping):
            raise InputError(f"evaluation report: teacher '{name}': field 'overall' must be an object of metrics")
    ordered = [t for t in TEACHER_ORDER if t in teachers] + [t for t in teachers if t not in TEACHER_ORDER]
    return {name: teachers[name] for name in ordered}


def label(teacher: str) -> str:
    return TEACHER_LABELS.get(teacher, teacher)


def _color(teacher: str, index: int) -> str:
    return TEACHER_COLORS.get(teacher, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


def _num(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}%"


def _pp(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:+.1f} pp"


def _arrow(before: str, after: str) -> str:
    return MISSING if MISSING in (before, after) else f"{before} → {after}"


def _delta_cell(m: Mapping[str, Any]) -> str:
    delta, low, high = _num(m, "accuracy_delta"), _num(m, "accuracy_delta_ci_low"), _num(m, "accuracy_delta_ci_high")
    if delta is None:
        return MISSING
    if low is None or high is None:
        return _pp(delta)
    return f"{_pp(delta)} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _tokens_cell(m: Mapping[str, Any]) -> str:
    base, taught = _num(m, "response_tokens_baseline"), _num(m, "response_tokens_taught")
    if base is None or taught is None:
        return MISSING
    text = f"{base:,.0f} → {taught:,.0f}"
    reduction = _num(m, "token_reduction")
    if reduction is not None:
        text += f" ({100 * abs(reduction):.1f}% {'fewer' if reduction >= 0 else 'more'})"
    return text


def _logp_cell(m: Mapping[str, Any]) -> str:
    delta = _num(m, "logp_gold_delta")
    if delta is None:
        return MISSING
    base, taught = _num(m, "logp_gold_baseline"), _num(m, "logp_gold_taught")
    if base is None or taught is None:
        return f"{delta:+.3f}"
    return f"{delta:+.3f} ({base:.3f} → {taught:.3f})"


_ROWS = (
    ("Non-Degradation Rate (per sample pair)", lambda m: _pct(_num(m, "non_degradation_rate"))),
    ("Non-Degradation Rate (per problem)", lambda m: _pct(_num(m, "non_degradation_rate_problem"))),
    (
        "Accuracy: baseline → taught",
        lambda m: _arrow(_pct(_num(m, "baseline_accuracy")), _pct(_num(m, "taught_accuracy"))),
    ),
    ("Accuracy delta [95% CI]", _delta_cell),
    (
        "Improved / degraded sample pairs",
        lambda m: _arrow(_pct(_num(m, "improvement_rate")), _pct(_num(m, "degradation_rate"))).replace("→", "/"),
    ),
    (
        "Completion: baseline → taught",
        lambda m: _arrow(_pct(_num(m, "completion_rate_baseline")), _pct(_num(m, "completion_rate_taught"))),
    ),
    ("Response tokens: baseline → taught", _tokens_cell),
    (
        "Teaching tokens (mean)",
        lambda m: MISSING if _num(m, "teaching_tokens") is None else f"{_num(m, 'teaching_tokens'):,.0f}",
    ),
    ("Leak rate", lambda m: _pct(_num(m, "leak_rate"))),
    ("log p(gold): delta (baseline → taught)", _logp_cell),
    ("Problems × samples (k)", lambda m: f"{m.get('n_problems', MISSING)} × {m.get('k', MISSING)}"),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align_first_left: bool = True) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---" if align_first_left else "---:"] + ["---:"] * (len(header) - 1)) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def summary_markdown(eval_json: Mapping[str, Any]) -> str:
    """A markdown report: the teachers side by side (overall), then accuracy per problem kind."""
    teachers = _teachers(eval_json)
    overall = {name: entry["overall"] for name, entry in teachers.items()}
    names = list(teachers)
    header = ["Metric"] + [label(n) for n in names]
    rows = []
    for title, cell in _ROWS:
        cells = [cell(overall[n]) for n in names]
        if title.startswith("log p") and all(c == MISSING for c in cells):
            continue
        rows.append([title] + cells)
    lines = ["# Evaluation summary", ""]
    lines.append(
        "Held-out split, the same two-pass protocol as training. *Student alone* has no teacher: its taught samples "
        "are a second independent set of unguided samples, so its Non-Degradation Rate is the sampling-noise floor "
        "to compare the teachers with. Definitions: `docs/metrics.md`."
    )
    lines.append("")
    lines.extend(_table(header, rows))
    pairs = eval_json.get("paired") or {}
    if pairs:
        lines += ["", "## Teachers against each other", "", "Taught accuracy difference, paired over problems, "
                  "with its 95% bootstrap interval; wins / losses count problems.", ""]  # fmt: skip
        pair_rows = []
        for key, p in pairs.items():
            a, b = key.split("-", 1)
            diff = f"{_pp(p['difference'])} [{_pp(p['ci_low'])}, {_pp(p['ci_high'])}]"
            pair_rows.append([f"{label(a)} − {label(b)}", diff, f"{p['wins']} / {p['losses']}"])
        lines.extend(_table(["Comparison", "Difference", "Wins / losses"], pair_rows))

    kinds = sorted({kind for entry in teachers.values() for kind in (entry.get("per_kind") or {})})
    if kinds:
        lines += ["", "## Accuracy by problem kind", "", "Baseline → taught accuracy, delta and its 95% interval.", ""]
        kind_rows = []
        for kind in kinds:
            cells, n = [], None
            for name in names:
                m = (teachers[name].get("per_kind") or {}).get(kind)
                if m is None:
                    cells.append(MISSING)
                    continue
                n = n if n is not None else m.get("n_problems")
                acc = _arrow(_pct(_num(m, "baseline_accuracy")), _pct(_num(m, "taught_accuracy")))
                cells.append(f"{acc}, {_delta_cell(m)}")
            kind_rows.append([f"{kind} (n={n})"] + cells)
        lines.extend(_table(["Kind"] + [label(n) for n in names], kind_rows))
    return "\n".join(lines) + "\n"


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def _save_png(fig: Any, path: Path | str) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _errors(values: Sequence[float | None], lows: Sequence[float | None], highs: Sequence[float | None]) -> list:
    """Asymmetric error-bar lengths [below, above]; 0 where the interval is unknown."""
    below = [0.0 if v is None or lo is None else max(0.0, v - lo) for v, lo in zip(values, lows, strict=True)]
    above = [0.0 if v is None or hi is None else max(0.0, hi - v) for v, hi in zip(values, highs, strict=True)]
    return [below, above]


def plot_accuracy_by_kind(eval_json: Mapping[str, Any], path: Path | str) -> Path:
    """Left: taught accuracy per kind and teacher (bars) with the baseline marked on each bar. Right: accuracy delta
    per kind and teacher with its bootstrap 95% interval. 'all' is the overall row."""
    teachers = _teachers(eval_json)
    names = list(teachers)
    kinds = sorted({kind for entry in teachers.values() for kind in (entry.get("per_kind") or {})})
    groups = ["all"] + kinds

    def metrics_for(name: str, group: str) -> Mapping[str, Any]:
        entry = teachers[name]
        return entry["overall"] if group == "all" else (entry.get("per_kind") or {}).get(group, {})

    fig = _new_figure(min(20.0, max(9.0, 0.8 * len(groups) * len(names) + 4.0)), 4.6)
    ax_acc, ax_delta = fig.subplots(1, 2)
    width = 0.8 / len(names)
    positions = list(range(len(groups)))
    for i, name in enumerate(names):
        xs = [p - 0.4 + width * (i + 0.5) for p in positions]
        series = [metrics_for(name, g) for g in groups]
        taught = [_num(m, "taught_accuracy") for m in series]
        baseline = [_num(m, "baseline_accuracy") for m in series]
        color = _color(name, i)
        ax_acc.bar(xs, [t or 0.0 for t in taught], width * 0.92, color=color, label=label(name))
        base_x = [x for x, b in zip(xs, baseline, strict=True) if b is not None]
        base_y = [b for b in baseline if b is not None]
        ax_acc.scatter(
            base_x,
            base_y,
            marker="_",
            s=260,
            color="black",
            linewidths=2,
            zorder=3,
            label="baseline" if i == 0 else None,
        )
        deltas = [_num(m, "accuracy_delta") for m in series]
        lows = [_num(m, "accuracy_delta_ci_low") for m in series]
        highs = [_num(m, "accuracy_delta_ci_high") for m in series]
        ax_delta.bar(xs, [d or 0.0 for d in deltas], width * 0.92, color=color, label=label(name))
        ax_delta.errorbar(
            xs, [d or 0.0 for d in deltas], yerr=_errors(deltas, lows, highs), fmt="none", ecolor="black", capsize=3
        )
    for ax in (ax_acc, ax_delta):
        ax.set_xticks(
            positions, groups, rotation=30 if len(groups) > 5 else 0, ha="right" if len(groups) > 5 else "center"
        )
        ax.set_xlabel("problem kind")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    ax_acc.set_ylim(0, 1.05)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("Taught accuracy (bars) vs baseline (black ticks)")
    ax_acc.legend(fontsize=8, loc="upper left")
    ax_delta.axhline(0.0, color="black", linewidth=0.8)
    ax_delta.set_ylabel("taught − baseline accuracy")
    ax_delta.set_title("Accuracy delta with bootstrap 95% interval")
    fig.suptitle("Accuracy per problem kind, held-out split")
    return _save_png(fig, path)


def plot_non_degradation(eval_json: Mapping[str, Any], path: Path | str) -> Path:
    """Non-degradation rate per teacher, per sample pair and per problem; the student-alone rate (the noise floor)
    is drawn as a dashed line."""
    teachers = _teachers(eval_json)
    names = list(teachers)
    fig = _new_figure(max(6.0, 1.4 * len(names) + 2), 4.4)
    ax = fig.subplots()
    variants = (("non_degradation_rate", "per sample pair", 1.0), ("non_degradation_rate_problem", "per problem", 0.5))
    width = 0.38
    for j, (key, variant, alpha) in enumerate(variants):
        xs = [i - width / 2 + j * width for i in range(len(names))]
        values = [_num(teachers[n]["overall"], key) for n in names]
        bars = ax.bar(
            xs,
            [v or 0.0 for v in values],
            width * 0.95,
            color=[_color(n, i) for i, n in enumerate(names)],
            alpha=alpha,
            edgecolor="black",
            linewidth=0.6,
            hatch=None if j == 0 else "//",
            label=variant,
        )
        ax.bar_label(bars, labels=[_pct(v) for v in values], fontsize=8, padding=2)
    floor = _num(teachers["none"]["overall"], "non_degradation_rate") if "none" in teachers else None
    if floor is not None:
        ax.axhline(floor, color="#555555", linestyle="--", linewidth=1, label="student alone, per pair (noise floor)")
    ax.set_xticks(range(len(names)), [label(n) for n in names])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("non-degradation rate")
    ax.set_title("Non-Degradation Rate per teacher (higher is better)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="lower right")
    return _save_png(fig, path)


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: Path | str) -> Path:
    """One panel per metric (e.g. GRPO `train/reward`, `train/accuracy_delta`) against the training step, with a
    moving average when the series is long. An empty history still gives a PNG that says so."""
    names = list(history)
    columns = 1 if len(names) <= 1 else 2
    rows = max(1, math.ceil(len(names) / columns))
    fig = _new_figure(5.2 * columns, 3.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    if not names:
        axes[0].text(0.5, 0.5, "no training history logged", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, name in zip(axes, names, strict=False):
        points = sorted(
            (int(step), float(value)) for step, value in history[name] if value is not None and math.isfinite(value)
        )
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3, linewidth=1, label="logged")
        if len(points) > 20:
            window = max(5, len(points) // 20)
            ax.plot(steps, _moving_average(values, window), linewidth=2, label=f"moving average ({window})")
            ax.legend(fontsize=8)
        if "delta" in name or "advantage" in name:
            ax.axhline(0.0, color="black", linewidth=0.8)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    fig.suptitle("Training curves")
    return _save_png(fig, path)


# `reports/headline.json`, what `dvc metrics show` prints: per trained teacher its taught accuracy, the change over
# the student alone and the non-degradation rate, the student's own accuracy, and the paired GRPO - SFT difference
# (short names so the table fits a screen; docs/metrics.md defines each).
HEADLINE_SHORT = {"taught_accuracy": "accuracy", "accuracy_delta": "delta", "non_degradation_rate": "ndr"}


def headline(eval_json: Mapping[str, Any]) -> dict[str, Any]:
    """The short headline of an evaluation report (values rounded to 4 places; a missing metric is left out)."""
    teachers = _teachers(eval_json)
    out: dict[str, Any] = {}
    student = teachers.get("none") or next(iter(teachers.values()))
    if (accuracy := _num(student["overall"], "baseline_accuracy")) is not None:
        out["student"] = {"accuracy": round(accuracy, 4)}
    for name, entry in teachers.items():
        if name == "none":
            continue
        values = {short: _num(entry["overall"], key) for key, short in HEADLINE_SHORT.items()}
        out[name] = {short: round(v, 4) for short, v in values.items() if v is not None}
    paired = (eval_json.get("paired") or {}).get("grpo-sft")
    if isinstance(paired, Mapping) and (diff := _num(paired, "difference")) is not None:
        out["grpo-sft"] = {"delta": round(diff, 4)}
    return out


def plot_records(eval_json: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The evaluation's data plots as lists of records (what `dvc plots` reads): `teachers` (one row per teacher:
    taught accuracy, non-degradation, change over the student) and `accuracy_by_kind` (one row per kind and teacher,
    labelled `kind · teacher` so the bars of one kind stand together)."""
    teachers = _teachers(eval_json)
    rows = []
    for name, entry in teachers.items():
        m = entry["overall"]
        rows.append(
            {
                "teacher": label(name),
                "taught_accuracy": _num(m, "taught_accuracy"),
                "non_degradation_rate": _num(m, "non_degradation_rate"),
                "accuracy_delta": _num(m, "accuracy_delta"),
            }
        )
    kinds = sorted({kind for entry in teachers.values() for kind in entry.get("per_kind") or {}})
    by_kind = [
        {"kind_teacher": f"{kind} · {label(name)}", "kind": kind, "teacher": label(name), "taught_accuracy": value}
        for kind in kinds
        for name, entry in teachers.items()
        if (value := _num((entry.get("per_kind") or {}).get(kind) or {}, "taught_accuracy")) is not None
    ]
    return {"teachers": rows, "accuracy_by_kind": by_kind}


def curve_records(log_history: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One record per logged training step with the `keys` it has (a trainer's `state.log_history`; entries without
    a step or without any of the keys, such as the final summary, are left out)."""
    rows = []
    for entry in log_history:
        step = entry.get("step")
        values = {k.replace("/", "_"): float(entry[k]) for k in keys if _num(entry, k) is not None}
        if isinstance(step, int) and values:
            rows.append({"step": step, **values})
    return rows
