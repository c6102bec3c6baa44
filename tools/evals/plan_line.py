"""What the evals will cost, in words for the approval: their size, the declared checks, a judge's tokens.

The evals run on this machine's CPU after training and bill nothing; their time grows with the tokens generated,
which is what the line counts. A judge's tokens are an upper bound from characters / 4 (tools.evals.judge).
"""

from __future__ import annotations

from tools.core.spec import TrainingSpec
from tools.evals.custom import describe
from tools.evals.judge import judge_model, judge_tokens
from tools.evals.thresholds import EvalThresholds


def eval_plan_line(spec: TrainingSpec, t: EvalThresholds) -> str:
    """One line: held-out rows, replies and general questions both models answer, and each declared check."""
    generated = 2 * t.n_generations * t.max_new_tokens
    parts = [f"up to {t.max_heldout_rows} held-out rows (2 forward passes each)"]
    parts.append(f"2×{t.n_generations} replies of ≤{t.max_new_tokens} tokens scored against the references")
    if t.forgetting_check:
        parts.append(f"2×{t.forgetting_rows} general questions of ≤{t.forgetting_new_tokens} tokens (forgetting)")
        generated += 2 * t.forgetting_rows * t.forgetting_new_tokens
    line = f"Evals after training, on this CPU, no charge: {', '.join(parts)}; ≤{generated:,} generated tokens."
    declared = []
    for check in spec.evals:
        if check.kind == "llm_judge":
            tokens = judge_tokens(check, t.n_generations, spec.seq_len, t.max_new_tokens)
            model = judge_model() or "no chat model configured: it will fail"
            declared.append(f"custom:{check.name} (LLM judge, {model}: {t.n_generations} calls, ≤{tokens:,} tokens)")
        elif check.kind == "lm_eval":
            declared.append(f"custom:{check.name} (lm-eval task {check.task}, a warning where it cannot run)")
        else:
            declared.append(f"custom:{check.name} ({describe(check)}, no model time)")
    return line + (f" Declared checks: {'; '.join(declared)}." if declared else "")
