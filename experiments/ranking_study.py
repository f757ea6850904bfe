"""Does the co-search's supernet rank architectures the way they rank trained alone?

For ``--archs`` architectures sampled from the search space (seeded, every weight format
represented), the supernet's estimate of each (its test score and its A2D distillation loss
at the architecture's path, after the co-search's supernet training) is set against the same
architecture trained stand-alone with distillation from the same teacher; Kendall's tau
measures the agreement (issue goal: tau >= 0.6).  One variant of the supernet training is
measured per ``--variant`` (``baseline``: today's co-search); the stand-alone runs are shared::

    python experiments/ranking_study.py run --config experiments/configs/ranking_breakout.yaml \
        --out experiments/results/ranking_breakout --archs 12 --standalone-steps 500000
    python experiments/ranking_study.py report --out experiments/results/ranking_breakout

``run`` resumes whatever a previous call left unfinished (the supernet training, each
stand-alone run) and skips what is done; ``--jobs`` stand-alone runs go at once (one core
each).  ``report`` writes ``ranking.md``, ``ranking.csv`` and ``ranking.png/.svg`` (estimate
against stand-alone score per variant) and prints the table.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from a3cs_common.cli import OneLineParser, int_at_least, script_main
from a3cs_common.errors import ConfigError

#: Supernet trainings compared (search-config overrides): today's, and the field's remedies.
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    # FairNAS: the weight steps train every option of every choice equally often
    "fair": {"supernet": {"weight_paths": "fair"}},
    # few-shot NAS: one weight copy per format type
    "per_format": {"supernet": {"weight_sharing": "per_format"}},
    # TuNAS / FBNet: the operations warm up (architecture frozen) for the first quarter
    "warmup_quarter": {"budget": {"warmup_steps": 45_000, "search_steps": 135_000}},
    # the Gumbel-softmax gates' straight-through gradient for the architecture step (as
    # Auto-NBA's, without its top-2 sampling) instead of the per-choice local expectation
    "straight_through": {"supernet": {"arch_gradient": "straight_through"}},
    # diagnosis: no distillation-only steps on extra paths (only the acting path's update)
    "no_distill_paths": {"supernet": {"distill_paths": 0}},
}
TEACHER_SAMPLES = 4096  # observations of the teacher's own play the distillation loss is taken on
ESTIMATE_EPISODES = 30


def _a3cs(*args: str) -> list[str]:
    return [sys.executable, "-m", "a3cs", *args]


# --------------------------------------------------------------------------------------------
# The supernet


def supernet_stage(config_path: Path, out: Path, variant: str, progress: bool) -> Path:
    """Train the co-search's supernet (resuming); returns its stage folder."""
    from a3cs.rl.checkpoint import load_teacher
    from a3cs.search.config import load_search_config
    from a3cs.search.cosearch import CHECKPOINT, run_supernet_search
    from a3cs.search.prepare import prepare

    stage = out / variant / "supernet"
    done = stage / "probabilities.yaml"
    if done.is_file():
        return stage
    prep = prepare(load_search_config(str(config_path), VARIANTS[variant]))
    teacher = load_teacher(prep.teacher_path) if prep.teacher_path else None
    rl = prep.rl.model_copy(update={"teacher": teacher.source if teacher else None})
    run_supernet_search(prep.config, rl, prep.space, prep.target, stage,
                        lam=prep.config.cost.lam, search_hardware=True,
                        resume=(stage / CHECKPOINT).is_file(), progress=progress)
    return stage


def load_supernet(config_path: Path, stage: Path, variant: str) -> tuple[Any, Any]:
    """The trained supernet of ``stage`` and the prepared search inputs."""
    import torch

    from a3cs.rl.checkpoint import read_checkpoint
    from a3cs.rl.envs import make_env
    from a3cs.rl.networks import RunningNorm, action_dim, policy_kind
    from a3cs.search.config import load_search_config
    from a3cs.search.cosearch import CHECKPOINT
    from a3cs.search.prepare import prepare
    from nas.supernet import SuperNet

    prep = prepare(load_search_config(str(config_path), VARIANTS[variant]))
    probe = make_env(prep.config.env_id, 1, prep.config.seed)
    obs_space, action_space = probe.single_observation_space, probe.single_action_space
    probe.close()
    supernet = SuperNet(prep.space, prep.obs_shape, action_dim(action_space),
                        gaussian=policy_kind(action_space) == "gaussian",
                        obs_scale=1.0 / 255.0 if obs_space.dtype.name == "uint8" else 1.0,
                        obs_transform=RunningNorm(prep.obs_shape) if prep.rl.normalize_obs
                        else None, generator=torch.Generator().manual_seed(0),
                        weight_sharing=prep.config.supernet.weight_sharing)
    saved = read_checkpoint(stage / CHECKPOINT, field="supernet")
    supernet.load_state_dict(saved["model"])
    return supernet.eval(), prep


# --------------------------------------------------------------------------------------------
# The architectures


def sample_architectures(config_path: Path, out: Path, count: int, seed: int) -> list[Path]:
    """``count`` distinct architectures drawn uniformly from the space (seeded), redrawn until
    every weight format of the space appears; written once to ``out/archs/``."""
    import torch

    from a3cs.search.config import load_search_config
    from a3cs.search.prepare import prepare
    from a3cs_common.io import atomic_write_text, dump_yaml

    folder = out / "archs"
    existing = sorted(folder.glob("arch_*.yaml"))
    if len(existing) >= count:
        return existing[:count]
    prep = prepare(load_search_config(str(config_path)))
    choices = prep.space.choices(prep.obs_shape)
    generator = torch.Generator().manual_seed(seed)
    wanted = {fmt.label() for fmt in (*prep.space.formats, *prep.space.head_formats)}
    for _attempt in range(1000):
        picked: dict[str, dict[str, int]] = {}
        while len(picked) < count:
            indices = {label: int(torch.randint(len(values), (1,), generator=generator))
                       for label, values in choices.items()}
            arch = prep.space.arch_from_indices(indices, prep.obs_shape)
            picked.setdefault(json.dumps(arch.to_dict(), sort_keys=True), indices)
        archs = [prep.space.arch_from_indices(ix, prep.obs_shape, f"arch_{i:02d}")
                 for i, ix in enumerate(picked.values())]
        seen = {spec.weight_format.label() for a in archs for spec in (*a.layers, a.head)
                if spec.width is not None}
        if seen >= wanted:
            break
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for arch, indices in zip(archs, picked.values(), strict=True):
        path = folder / f"{arch.name}.yaml"
        atomic_write_text(path, dump_yaml(arch.to_dict()))
        atomic_write_text(path.with_suffix(".indices.json"), json.dumps(indices, indent=1))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# The supernet's estimates


def teacher_data(prep: Any, out: Path, samples: int = TEACHER_SAMPLES,
                 name: str = "teacher_data.pt", seed: int = 30_000) -> dict[str, Any]:
    """Observations of the teacher's own play (seeded) with its policy and value on them
    (cached in ``out/name``)."""
    import dataclasses

    import torch

    from a3cs.rl.checkpoint import load_teacher
    from a3cs.search.teacher_play import collect_teacher_play

    path = out / name
    if path.is_file():
        return torch.load(path, weights_only=True)
    play = collect_teacher_play(load_teacher(prep.teacher_path).model, prep.config.env_id,
                                samples, seed=seed)
    data = dataclasses.asdict(play)
    torch.save(data, path)
    return data


def estimates_stage(config_path: Path, out: Path, variant: str, archs: list[Path]) -> Path:
    """The supernet's estimate of each architecture: test score at its path
    (``ESTIMATE_EPISODES`` episodes) and the distillation loss on the teacher's data."""
    import torch

    from a3cs.rl.evaluate import evaluate_policy, model_policy
    from a3cs_common.io import atomic_write_text
    from distill.losses import distill_loss

    path = out / variant / "estimates.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    todo = [a for a in archs if a.stem not in done]
    if not todo:
        return path
    supernet, prep = load_supernet(config_path, out / variant / "supernet", variant)
    data = teacher_data(prep, out)
    coefs = prep.config.distill
    for arch_path in todo:
        indices = json.loads(arch_path.with_suffix(".indices.json").read_text())
        supernet.use_architecture(indices)
        score = evaluate_policy(model_policy(supernet, seed=0), prep.config.env_id,
                                ESTIMATE_EPISODES, seed=40_000)
        with torch.no_grad():
            loss = distill_loss(supernet, data["obs"], data["teacher_dist"],
                                data["teacher_value"], kind=supernet.kind,
                                actor_coef=coefs.actor_coef, critic_coef=coefs.critic_coef)
        done[arch_path.stem] = {"score": score.mean_return, "distill_loss": float(loss.total),
                                "actor_kl": float(loss.actor_kl)}
        atomic_write_text(path, json.dumps(done, indent=1))
        print(f"{variant} {arch_path.stem}: supernet score {score.mean_return:.2f}, "
              f"distill loss {float(loss.total):.4f}", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# A supervised distillation proxy (no supernet, no environment steps)

PROXY_TRAIN, PROXY_HELD_OUT, PROXY_STEPS, PROXY_BATCH = 16_384, 4_096, 2_000, 256


def proxy_stage(config_path: Path, out: Path, archs: list[Path], steps: int, *,
                pruning: str = "dense") -> Path:
    """Each architecture alone, trained by A2D's loss on the teacher's play (``steps`` Adam
    steps of ``PROXY_BATCH`` states, seeded), scored on held-out states of the teacher
    (:func:`distill.proxy.distill_proxy`): ``score`` is the share of states where its greedy
    action is the teacher's (%), ``distill_loss`` the held-out A2D loss.  ``pruning``: with
    ``schedule`` the 1xN and N:M layers are pruned on the retraining's ramp during those steps,
    as the search's proxy does (:func:`a3cs.search.multitrial.proxy_pruning`); with ``start``
    they are at their sparsity from the first step; with ``dense`` they train dense (the proxy
    before it).  Written to ``distill_proxy/``, ``distill_proxy_pruned/`` or
    ``distill_proxy_sparse_start/`` (``..._<steps>/`` for other than ``PROXY_STEPS`` steps)."""
    from a3cs.rl.envs import make_env
    from a3cs.rl.networks import build_agent
    from a3cs.search.config import load_search_config
    from a3cs.search.multitrial import proxy_pruning
    from a3cs.search.prepare import prepare
    from a3cs_common.io import atomic_write_text
    from distill.proxy import TeacherPlay, distill_proxy
    from nas.arch import load_arch

    variant = {"dense": "distill_proxy", "schedule": "distill_proxy_pruned",
               "start": "distill_proxy_sparse_start"}[pruning]
    variant += "" if steps == PROXY_STEPS else f"_{steps}"
    path = out / variant / "estimates.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    todo = [a for a in archs if a.stem not in done]
    if not todo:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    prep = prepare(load_search_config(str(config_path)))
    play = TeacherPlay(**teacher_data(prep, out, PROXY_TRAIN + PROXY_HELD_OUT,
                                      "teacher_proxy_data.pt", seed=50_000))
    train, held_out = play.split(PROXY_TRAIN)
    probe = make_env(prep.config.env_id, 1, 0)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    coefs = prep.config.distill
    for arch_path in todo:
        model = build_agent(load_arch(str(arch_path)), *spaces, seed=0)
        started = time.perf_counter()
        score = distill_proxy(model, train, held_out, kind=model.kind, steps=steps,
                              batch_size=PROXY_BATCH, lr=1e-3, actor_coef=coefs.actor_coef,
                              critic_coef=coefs.critic_coef, seed=0,
                              before_step=None if pruning == "dense" else proxy_pruning(
                                  model, prep.rl, start=pruning == "start"))
        done[arch_path.stem] = {"score": 100 * score.agreement,
                                "distill_loss": score.distill_loss, "actor_kl": score.actor_kl,
                                "seconds": round(time.perf_counter() - started, 1)}
        atomic_write_text(path, json.dumps(done, indent=1))
        print(f"{variant} {arch_path.stem}: agreement {100 * score.agreement:.1f} %, held-out "
              f"loss {score.distill_loss:.4f}", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# Stand-alone training


def standalone_one(config_path: Path, out: Path, arch: Path, steps: int, episodes: int) -> str:
    """``a3cs train --arch`` with distillation from the search's teacher and its RL settings
    (resumed when unfinished), then ``a3cs evaluate``; cached in ``eval.json``."""
    from a3cs.rl.checkpoint import export_agent
    from a3cs.search.config import load_search_config
    from a3cs.search.prepare import prepare
    from a3cs_common.io import atomic_write_text, dump_yaml

    run = out / "standalone" / arch.stem
    result = run / "eval.json"
    if result.is_file():
        if not (run / "agent.pt").is_file() and (run / "checkpoint.pt").is_file():
            export_agent(run / "checkpoint.pt", run / "agent.pt")
        return f"{run}: done before"
    prep = prepare(load_search_config(str(config_path)))
    run.parent.mkdir(parents=True, exist_ok=True)
    train_config = run.parent / f"{arch.stem}.train.yaml"
    settings = {**prep.config.rl, "distill": prep.config.distill.model_dump()}
    atomic_write_text(train_config, dump_yaml(settings))
    command = _a3cs("train", "--env", prep.config.env_id, "--arch", str(arch), "--teacher",
                    prep.teacher_path, "--steps", str(steps), "--seed", "0", "--config",
                    str(train_config), "--out", str(run), "--threads", "1", "--no-progress")
    if (run / "checkpoint.pt").is_file():
        command.append("--resume")
    with (run.parent / f"{arch.stem}.log").open("a") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        return f"{run}: train exit {code}"
    export_agent(run / "checkpoint.pt", run / "agent.pt")  # committed; checkpoint.pt is not
    printed = subprocess.run(_a3cs("evaluate", str(run / "agent.pt"), "--episodes",
                                   str(episodes), "--format", "json", "--device", "cpu"),
                             check=True, capture_output=True, text=True).stdout
    atomic_write_text(result, printed.strip().splitlines()[-1] + "\n")
    return f"{run}: finished"


# --------------------------------------------------------------------------------------------
# Report


def kendall_tau(x: list[float], y: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def report(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from a3cs_common.io import atomic_write_text, save_figure

    standalone = {p.parent.name: json.loads(p.read_text())["mean_return"]
                  for p in sorted((out / "standalone").glob("*/eval.json"))}
    variants = [v for v in VARIANTS if (out / v / "estimates.json").is_file()] + sorted(
        p.parent.name for p in out.glob("distill_proxy*/estimates.json"))
    rows, lines = [], ["| variant | archs | tau (score estimate vs stand-alone score) | "
                       "tau (-distillation loss vs stand-alone score) | goal |",
                       "|---|---:|---:|---:|---|"]
    fig, axes = plt.subplots(1, 2 * max(1, len(variants)), figsize=(8 * max(1, len(variants)),
                                                                    3.6), squeeze=False)
    for v_index, variant in enumerate(variants):
        estimates = json.loads((out / variant / "estimates.json").read_text())
        names = sorted(set(estimates) & set(standalone))
        truth = [standalone[n] for n in names]
        score = [estimates[n]["score"] for n in names]
        loss = [estimates[n]["distill_loss"] for n in names]
        tau_score = kendall_tau(score, truth) if len(names) > 1 else math.nan
        tau_loss = kendall_tau([-v for v in loss], truth) if len(names) > 1 else math.nan
        lines.append(f"| {variant} | {len(names)} | {tau_score:.2f} | {tau_loss:.2f} | "
                     f"{'met' if max(tau_score, tau_loss) >= 0.6 else 'not met'} (0.6) |")
        for n in names:
            rows.append({"variant": variant, "arch": n, "standalone_score": standalone[n],
                         "score_estimate": estimates[n]["score"],
                         "distill_loss_estimate": estimates[n]["distill_loss"]})
        for ax, values, label, tau in ((axes[0][2 * v_index], score, "score estimate", tau_score),
                                       (axes[0][2 * v_index + 1], loss,
                                        "distillation loss estimate", tau_loss)):
            ax.scatter(values, truth)
            for n, xv, yv in zip(names, values, truth, strict=True):
                ax.annotate(n.removeprefix("arch_"), (xv, yv), fontsize=7)
            ax.set_xlabel(f"{label} ({variant})")
            ax.set_ylabel("stand-alone test score")
            ax.set_title(f"Kendall tau {tau:.2f}", fontsize=9)
    fig.tight_layout()
    figures = save_figure(fig, out / "ranking")
    plt.close(fig)
    if rows:
        with (out / "ranking.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    per_arch = ["", "| arch | stand-alone score | " + " | ".join(
        f"{v} score estimate | {v} distill loss" for v in variants) + " |",
        "|---|---:|" + "---:|---:|" * len(variants)]
    for name in sorted(standalone):
        cells = []
        for variant in variants:
            est = json.loads((out / variant / "estimates.json").read_text()).get(name)
            cells.append(f"{est['score']:.2f} | {est['distill_loss']:.4f}" if est else "- | -")
        per_arch.append(f"| {name} | {standalone[name]:.2f} | " + " | ".join(cells) + " |")
    legend = ["", "Score estimate: the supernet's test score at the architecture's path "
              f"({ESTIMATE_EPISODES} episodes); for distill_proxy, the share of the teacher's "
              "held-out states (%) where the architecture, distilled alone on the teacher's "
              "play, takes the teacher's greedy action."]
    text = "\n".join(lines + per_arch + legend) + "\n"
    atomic_write_text(out / "ranking.md", text)
    print(text)
    print("figures: " + ", ".join(str(p) for p in figures))
    if standalone:
        print(f"stand-alone scores: median {statistics.median(standalone.values()):.2f}")


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--config", type=Path,
                        default=Path("experiments/configs/ranking_breakout.yaml"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/ranking_breakout"))
    parser.add_argument("--variant", choices=list(VARIANTS), default="baseline",
                        help="the supernet training measured: " + "; ".join(
                            f"{name} {overrides or '(the co-search as it is)'}"
                            for name, overrides in VARIANTS.items()))
    parser.add_argument("--archs", type=int_at_least(1), default=12)
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture draw")
    parser.add_argument("--standalone-steps", type=int_at_least(1), default=500_000)
    parser.add_argument("--episodes", type=int_at_least(1), default=50,
                        help="stand-alone evaluation")
    parser.add_argument("--jobs", type=int_at_least(1), default=1)
    parser.add_argument("--proxy", action="store_true",
                        help="also the supervised distillation proxy of every architecture "
                        "(estimator distill_proxy: no supernet, no environment steps)")
    parser.add_argument("--proxy-steps", type=int_at_least(1), default=PROXY_STEPS,
                        help="Adam steps of each architecture's distillation proxy")
    parser.add_argument("--proxy-pruning", choices=("dense", "schedule", "start"),
                        default="dense", help="sparse layers in the proxy: trained dense "
                        "(distill_proxy), pruned on the retraining's schedule over the proxy's "
                        "steps (distill_proxy_pruned) or pruned to their sparsity before the "
                        "first step (distill_proxy_sparse_start)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("supernet", "standalone"),
                        help="stages not to run now (e.g. to give the stand-alone runs the "
                        "cores first)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.proxy and (args.proxy_pruning != "dense" or args.proxy_steps != PROXY_STEPS):
        option, value = (("--proxy-pruning", args.proxy_pruning) if args.proxy_pruning != "dense"
                         else ("--proxy-steps", args.proxy_steps))
        raise ConfigError(option, value, "with --proxy (the proxy stage it sets up)")
    if args.action == "report":
        if not args.out.is_dir():
            raise ConfigError("--out", str(args.out), "the folder of a study (written by run)")
        report(args.out)
        return 0
    from a3cs.search.config import load_search_config
    from a3cs.search.prepare import prepare
    from a3cs_common.io import check_output_path

    # The search config, its teacher and --out are checked before any stage starts (the
    # stand-alone runs are child processes that would each fail on their own).
    prepare(load_search_config(str(args.config), VARIANTS[args.variant]))
    check_output_path(args.out, field="--out", kind="directory")
    args.out.mkdir(parents=True, exist_ok=True)
    archs = sample_architectures(args.config, args.out, args.archs, args.seed)
    print(f"{len(archs)} architectures in {args.out / 'archs'}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = []
        if "standalone" not in args.skip:
            futures = [pool.submit(standalone_one, args.config, args.out, arch,
                                   args.standalone_steps, args.episodes) for arch in archs]
        if "supernet" not in args.skip:
            supernet_stage(args.config, args.out, args.variant, not args.no_progress)
            estimates_stage(args.config, args.out, args.variant, archs)
        if args.proxy:
            proxy_stage(args.config, args.out, archs, args.proxy_steps,
                        pruning=args.proxy_pruning)
        for future in futures:
            print(future.result(), flush=True)
    report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
