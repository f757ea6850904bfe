"""Why a search missed: the distill proxy's agreement of one architecture against the choice
of finished evolution runs, and whether their search ever sampled it (docs/search.md, fourth
round).

    python experiments/proxy_agreement.py RUN_DIR... [--arch SAMPLE.json]

For each run directory (an ``a3cs search`` run with ``proxy.kind: distill``) it prints the
agreement of the architecture (default: the network seeds 0 and 1 of Breakout found, conv 16
3x3 dense and a 256-wide head at 1x8 with 75 % of its blocks pruned), that of the run's best
trial (recomputed, next to the recorded one), whether the run sampled the architecture, and
the run's five best trained agreements.  Deterministic: the run's seed fixes the teacher's
play and the proxy's training.
"""

from __future__ import annotations

import sys
from pathlib import Path

from a3cs.rl.checkpoint import load_teacher
from a3cs.search.config import load_search_config
from a3cs.search.multitrial import _distill_trial, _teacher_play, _trial_key
from a3cs.search.prepare import prepare
from a3cs_common.cli import OneLineParser, script_main
from a3cs_common.errors import ConfigError
from a3cs_common.io import load_json_records, load_mapping

BREAKOUT_FOUND = {
    "layers.0.op": "conv3x3", "layers.0.width": 16, "layers.0.format": "dense",
    "layers.1.op": "skip", "layers.1.width": 32, "layers.1.format": "bc8",
    "layers.2.op": "skip", "layers.2.width": 32, "layers.2.format": "bc8",
    "head.width": 256, "head.format": "1x8@0.75"}


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--arch", type=Path, help="a JSON sample of the agent space")
    args = parser.parse_args(argv)
    candidate = load_mapping(args.arch, field="--arch") if args.arch else BREAKOUT_FOUND
    # Every run's inputs are read and checked before the first teacher plays.
    runs = []
    for run in args.runs:
        prep = prepare(load_search_config(str(run / "config.yaml")))
        if prep.config.proxy.kind != "distill" or prep.teacher_path is None:
            raise ConfigError("runs", str(run), "runs of a search with proxy.kind: distill "
                              "(and its teacher)")
        trials = load_json_records(run / "search" / "trials.json", field="runs",
                                   expected="the run's trials (search/trials.json)",
                                   keys=("reward", "sample", "agreement"))
        if not any(t["agreement"] is not None for t in trials):
            raise ConfigError("runs", str(run), "runs with trained trials (search/trials.json)")
        try:
            arch = prep.space.arch(candidate, prep.obs_shape, name="c")
        except ConfigError as exc:
            raise exc.within("--arch") from None
        runs.append((run, prep, trials, arch, load_teacher(prep.teacher_path, field="teacher")))
    for run, prep, trials, arch, teacher in runs:
        play = _teacher_play(prep, teacher)
        # the best trained trial: samples outside the latency band are recorded untrained
        best = max((t for t in trials if t["agreement"] is not None), key=lambda r: r["reward"])
        key = _trial_key(prep, {"arch": candidate})
        sampled = any(_trial_key(prep, t["sample"]) == key for t in trials)
        trained = sorted(t["agreement"] for t in trials if t["agreement"] is not None)
        agreement = _distill_trial(prep, arch, play)
        best_now = _distill_trial(prep, prep.space.arch(best["sample"]["arch"], prep.obs_shape,
                                                        name="b"), play)
        print(f"{run.name}: candidate {agreement:.3f} (sampled: {sampled}), best "
              f"{best_now:.3f} (recorded {best['agreement']:.3f}); {len(trained)} trained, "
              f"top five {[round(a, 3) for a in trained[-5:]]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
