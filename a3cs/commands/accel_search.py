"""``a3cs accel-search``: search an accelerator space for a fixed workload."""

from __future__ import annotations

import argparse

from a3cs.commands.common import add_workload, load_cli_workload
from a3cs_common.cli import finite_float, seed_int

METHODS = ("differentiable", "random", "exhaustive", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "accel-search",
        help="search the accelerator for a fixed workload (differentiable, random or "
        "exhaustive) and write the best hardware as YAML",
        description="Search an accelerator space (SPACE.yaml: the searched hw_sim fields, "
        "their options, the base hardware with clock and budget) for the workload. Writes "
        "OUT/hardware.yaml (one per chunk for chunked spaces, with the chunk's workload), "
        "which `a3cs simulate` and `a3cs estimate` load, and OUT/search.json.",
    )
    add_workload(parser)
    parser.add_argument("--space", required=True, metavar="SPACE.yaml",
                        help="accelerator search space (see experiments/hw/zc706_space.yaml)")
    parser.add_argument("--method", choices=METHODS, default="differentiable",
                        help="differentiable (Gumbel-softmax, default), random, exhaustive, or "
                        "all three (random gets the differentiable search's evaluation count)")
    parser.add_argument("--steps", type=int, default=30,
                        help="differentiable: optimisation steps (default 30)")
    parser.add_argument("--lr", type=finite_float, default=0.5,
                        help="differentiable: Adam learning rate on the logits (default 0.5)")
    parser.add_argument("--samples", type=int, default=1000,
                        help="random: valid configurations to score (default 1000)")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="runs/accel_search", metavar="DIR",
                        help="output folder (default runs/accel_search)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    from a3cs_common.errors import ConfigError

    if args.steps < 1:
        raise ConfigError("--steps", args.steps, "an integer >= 1")
    if not args.lr > 0:
        raise ConfigError("--lr", args.lr, "a number > 0")
    if args.samples < 1:
        raise ConfigError("--samples", args.samples, "an integer >= 1")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    from a3cs_common.io import atomic_write_text, check_output_path, dump_yaml
    from accelerator_model.cost import HardwareCost
    from accelerator_model.search import (
        DifferentiableOptions,
        SearchResult,
        differentiable,
        exhaustive,
        random_search,
    )
    from accelerator_model.space import AcceleratorSpace, assignment
    from hw_sim.workload import make_workload

    _check(args)
    check_output_path(args.out, field="--out", kind="directory")
    workload = load_cli_workload(args.workload)
    from a3cs.paths import resolve_path

    # the rule of search configs: as given (from the working directory), else package data
    space = AcceleratorSpace.from_yaml(resolve_path(args.space, None), field="--space")
    space.check_budget_feasible()
    out = Path(args.out)
    methods = ("exhaustive", "random", "differentiable") if args.method == "all" \
        else (args.method,)

    results: dict[str, SearchResult] = {}
    for method in reversed(methods):  # differentiable first: random uses its count
        cost = HardwareCost(space, [], workload.layers)
        if method == "differentiable":
            with tqdm(total=args.steps, desc="differentiable", unit="step",
                      disable=args.quiet) as bar:
                results[method] = differentiable(
                    cost, DifferentiableOptions(steps=args.steps, lr=args.lr, seed=args.seed),
                    progress=bar.update)
        elif method == "random":
            samples = args.samples
            if "differentiable" in results:
                samples = results["differentiable"].config_evaluations
            results[method] = random_search(cost, samples, seed=args.seed)
        else:
            with tqdm(total=space.size, desc="exhaustive", unit="config",
                      disable=args.quiet) as bar:
                results[method] = exhaustive(cost, progress=bar.update)

    best = results[methods[-1]] if args.method != "all" else results["differentiable"]
    hardware = space.hardware(best.sample)
    written = []
    if len(hardware) == 1:
        path = out / "hardware.yaml"
        atomic_write_text(path, dump_yaml(_hardware_dict(hardware[0])))
        written.append(str(path))
    else:
        rule = best.sample.get("chunk_assignment", space.rules[0])
        chunk_of = assignment(space, workload.layers, rule)
        for c, hw in enumerate(hardware):
            path = out / f"chunk{c}_hardware.yaml"
            atomic_write_text(path, dump_yaml(_hardware_dict(hw)))
            layers = [layer for layer, k in zip(workload.layers, chunk_of, strict=True)
                      if k == c]
            written.append(str(path))
            if layers:
                sub = make_workload(f"{workload.name}_chunk{c}", layers)
                wpath = out / f"chunk{c}_workload.yaml"
                atomic_write_text(wpath, dump_yaml(sub.to_dict()))
                written.append(str(wpath))
    report = {"workload": workload.name, "space": space.config.name,
              "space_size": space.size, "objective": space.objective,
              "results": {m: r.summary() for m, r in results.items()}}
    if "exhaustive" in results:
        optimum = results["exhaustive"].objective
        for m, r in results.items():
            report["results"][m]["gap_to_exhaustive"] = r.objective / optimum - 1
    atomic_write_text(out / "search.json", json.dumps(report, indent=2) + "\n")
    for m in methods:
        r = results[m]
        print(f"{m:15s} {space.objective} {r.objective:.6g}  latency {r.latency_s * 1e3:.5f} ms"
              f"  energy {r.energy_pj * 1e-6:.4f} uJ  FPS {r.fps:,.0f}  "
              f"configs scored {r.config_evaluations:,}  rejected {r.rejected:,}  "
              f"({r.seconds:.1f} s)")
    print("best:", ", ".join(f"{k}={v}" for k, v in best.sample.items()))
    print("wrote", ", ".join([*written, str(out / "search.json")]))
    return 0


def _hardware_dict(hw: object) -> dict:
    """A Hardware as the mapping its YAML holds (defaults left out)."""
    return hw.model_dump(mode="json", exclude_defaults=True)  # type: ignore[attr-defined]
