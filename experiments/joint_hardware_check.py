"""Do the co-search's joint accelerator logits find the accelerator an accelerator-only search
would give its agent?  (Issue 21, item 3: Auto-NBA re-searches the accelerator for the current
best network every N architecture steps; "do the same or show that the joint logits do as
well".)

For every finished ``a3cs`` / ``a3cs_no_distill`` run under the given folders, the run's final
agent (``workload.yaml``) is measured with hw_sim on two accelerators of the same space: the
co-searched one (``hardware.yaml``, the most probable configuration under the joint logits that
runs the agent) and the one an accelerator-only search picks for that agent (what the
``hand_designed`` and ``sequential`` methods get, and what a re-search at the end of the
search would give).  The ratio of their FPS is what re-searching would buy::

    python experiments/joint_hardware_check.py experiments/results/cosearch_minatar_v10 \\
        --out experiments/results/joint_hardware_check

writes ``OUT.md`` and ``OUT.json`` (one row per run: both FPS figures and their ratio, and the
median ratio per method).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from a3cs_common.cli import OneLineParser, script_main
from a3cs_common.errors import ConfigError

CO_SEARCHED_METHODS = ("a3cs", "a3cs_no_distill")


def load_run(run: Path) -> tuple[Any, Any, dict[str, Any]] | None:
    """A finished run's search config, final agent's workload and co-searched hardware; None
    for runs of other methods.

    Raises:
        ConfigError: one of the run's files is missing or invalid.
    """
    from a3cs.search.config import load_search_config
    from a3cs_common.io import load_mapping
    from hw_sim.files import load_workload

    config = load_search_config(str(run / "config.yaml"))
    if config.method not in CO_SEARCHED_METHODS:
        return None
    return (config, load_workload(str(run / "workload.yaml")),
            load_mapping(run / "hardware.yaml", field="hardware.yaml"))


def check_run(run: Path, config: Any, workload: Any, hardware: dict[str, Any]) -> dict[str, Any]:
    """Both accelerators' FPS for one finished run (its files as :func:`load_run` read them)."""
    from a3cs.search.target_factory import make_target
    from a3cs.search.targets import HardwareChoice

    target = make_target(config.target_kind, config.target_value, config.seed)
    joint = HardwareChoice(label="co-searched", description=hardware, how="hardware.yaml")
    searched = target.choose(workload, config.seed)
    joint_fps = target.measure(workload, joint).fps
    searched_fps = target.measure(workload, searched).fps
    return {"run": run.name, "method": config.method, "env_id": config.env_id,
            "seed": config.seed, "fps_joint_logits": joint_fps,
            "fps_accelerator_search": searched_fps, "ratio": searched_fps / joint_fps,
            "accelerator_search": searched.label}


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep folders holding run "
                        "directories")
    parser.add_argument("--out", type=Path,
                        default=Path("experiments/results/joint_hardware_check"))
    args = parser.parse_args(argv)
    from a3cs_common.io import atomic_write_text, check_output_path

    runs = sorted(p.parent for folder in args.folders for p in folder.glob("*/results.json"))
    if not runs:
        raise ConfigError("folders", " ".join(map(str, args.folders)), "folders holding "
                          "finished run directories (*/results.json)")
    for suffix in (".md", ".json"):
        check_output_path(args.out.with_suffix(suffix), field="--out")
    # Every run's files are read before the first is measured: a damaged one ends the script
    # in one line at the start, not after the others' accelerator searches.
    loaded = [(run, files) for run in runs if (files := load_run(run)) is not None]
    rows = []
    for run, files in loaded:
        row = check_run(run, *files)
        rows.append(row)
        print(f"{row['run']}: joint logits {row['fps_joint_logits']:,.0f} FPS, accelerator "
              f"search {row['fps_accelerator_search']:,.0f} FPS ({row['ratio']:.3f}x)",
              flush=True)
    methods = sorted({r["method"] for r in rows})
    median = {m: statistics.median(r["ratio"] for r in rows if r["method"] == m)
              for m in methods}
    lines = ["| run | FPS, co-searched accelerator | FPS, accelerator search for the agent | "
             "ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['fps_joint_logits']:,.0f} | {r['fps_accelerator_search']:,.0f} "
              f"| {r['ratio']:.3f} |" for r in rows]
    lines += ["", "Median ratio: " + ", ".join(f"{m} {v:.3f}" for m, v in median.items())]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(
        {"runs": rows, "median_ratio": median}, indent=2) + "\n")
    print("\n".join(lines[-1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
