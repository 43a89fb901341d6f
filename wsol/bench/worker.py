"""One figure in its own process: ``python -m wsol.bench.worker FIGURE PARAMS_JSON OUT_JSON``
(started by `wsol.bench.runner`; PARAMS_JSON holds the figure's keyword arguments plus
an optional ``threads``). Writes the figure's result dict as JSON to OUT_JSON."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

FIGURES = {
    "eval": "wsol.bench.eval_figure",
    "evaluate_cli": "wsol.bench.cli_eval_bench",
    "train": "wsol.bench.train_bench",
    "data": "wsol.bench.data_bench",
    "inference": "wsol.bench.infer_bench",
    "memory": "wsol.bench.mem_bench",
}


def run_figure(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run figure ``name`` in this process with ``params`` (``threads``, when given, sets
    torch's intra-op threads first)."""
    params = dict(params)
    threads = params.pop("threads", None)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    module = importlib.import_module(FIGURES[name])
    return module.run(**params)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in FIGURES:
        sys.exit(f"usage: python -m wsol.bench.worker {{{','.join(FIGURES)}}} PARAMS_JSON OUT_JSON")
    name, params, out = argv
    result = run_figure(name, json.loads(params))
    from wsol.io import write_text

    write_text(out, json.dumps(result, default=str))


if __name__ == "__main__":
    main()
