"""Figure 1, evaluation: the protocol engine's milliseconds per 224x224 map against
the plain per-threshold implementations, from `wsol.bench.eval_bench` (one thread)."""

from __future__ import annotations

from typing import Any

from wsol.bench.common import row

TARGET_MS = 5.0


def run(n_maps: int = 50, n_ref_maps: int = 10, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    from wsol.bench import eval_bench

    rows_in = eval_bench.run(n_maps=n_maps, seed=seed, n_ref_maps=n_ref_maps, repeats=repeats)
    rows = []
    for r in rows_in:
        target = r["task"] == "maxboxacc_v2" and r["thresholds"] == 1000
        same = "same answers" if r["identical"] else "DIFFERENT answers"
        rows.append(
            row(
                f"{r['task']} @{r['thresholds']} thr vs {r['reference']}, {same} (ms/map)",
                r["engine_ms"],
                r["reference_ms"],
                r["speedup"],
                unit="ms/map",
                target=f"suite <= {TARGET_MS:g} ms (1 core)" if target else None,
                met=(r["engine_ms"] <= TARGET_MS) if target else None,
            )
        )
    return {
        "figure": "eval",
        "title": "Evaluation: protocol engine vs plain per-threshold implementation (ms per 224x224 map)",
        "rows": rows,
        "notes": [
            "one thread (numba, torch, OpenCV, BLAS); ratio = reference ms / engine ms "
            f"(speed-up); engine on {n_maps} maps, references on {min(n_ref_maps, n_maps)} of "
            "them, where the answers are also compared; best of "
            f"{repeats} repeats",
        ],
        "details": "```\n" + eval_bench._table(rows_in) + "\n```",
        "identical": all(r["identical"] for r in rows_in),
    }
