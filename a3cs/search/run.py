"""One ``a3cs search`` run, stage by stage, resumable.

Stages (each recorded in ``state.json`` when complete; ``--resume`` skips completed stages and
continues an interrupted one from its own checkpoint):

``teacher``   train the A2D teacher (the reference network) unless one is given
``search``    find the architecture (and hardware) the method finds
``hardware``  fix the hardware for that architecture
``retrain``   train the chosen agent from scratch (with distillation unless the method is
              ``a3cs_no_distill``)
``evaluate``  test score over ``eval_episodes`` episodes
``measure``   the trained agent's workload on the chosen hardware, on the ground truth
``results``   results.json / results.csv and the run's Pareto plot

A run directory holds: ``config.yaml`` (resolved), ``log.txt``, ``state.json``, the stage
folders (``teacher/``, ``search/``, ``retrain/``), ``arch.yaml``, ``hardware.yaml``,
``eval.json``, ``measurement.json``, ``results.json``, ``results.csv``,
``pareto_fps.png/.svg``, and ``stage_time.json`` (each stage's wall time over every session,
so a resumed run's ``wall_time_s`` counts all of them).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from a3cs.paths import portable_path, resolve_path
from a3cs.results import RunResult, write_results
from a3cs.rl.checkpoint import load_agent, load_teacher
from a3cs.rl.train import train
from a3cs.search.config import SearchConfig, portable_paths, resolve_paths
from a3cs.search.prepare import Prepared, RunLog, check_scoring, prepare
from a3cs.search.stage_clock import StageClock
from a3cs.search.targets import HardwareChoice, Target
from a3cs_common.errors import ConfigError
from a3cs_common.io import (
    atomic_write_bytes,
    atomic_write_text,
    dump_yaml,
    load_mapping,
    read_text,
    remove_stale_temporaries,
)
from a3cs_common.schema import validate
from a3cs_common.torch_settings import torch_threads
from distill.teacher import Teacher
from hw_sim.workload import Workload
from nas.arch import Arch, load_arch, reference_arch

STAGES = ("teacher", "search", "hardware", "retrain", "evaluate", "measure", "results")
STATE = "state.json"
STAGE_TIME = "stage_time.json"  # each stage's wall time so far, over sessions (StageClock)


@dataclass(frozen=True)
class RunPaths:
    """Where a finished run's results are."""

    run_dir: Path
    results_json: Path
    results_csv: Path
    plot_png: Path
    plot_svg: Path


def run_search(config: SearchConfig, out: str | Path, *, resume: bool = False,
               progress: bool = True) -> RunPaths:
    """Run every stage of one search (see the module docstring), on ``config.torch_threads``
    threads (the previous count is restored at the end).

    Raises:
        ConfigError: any bad input, before work starts; a run directory that already holds a
            run (without ``resume``) or holds a different config (with ``resume``).
    """
    out = Path(out)
    state_path = out / STATE
    if resume:
        if not state_path.is_file():
            raise ConfigError("--resume", str(out), f"a run directory holding {STATE}")
        saved = resolve_paths(validate(SearchConfig, load_mapping(
            out / "config.yaml", field="--resume"), source=str(out / "config.yaml")), None)
        if saved != config:
            changed = sorted(k for k in SearchConfig.model_fields
                             if getattr(saved, k) != getattr(config, k))
            raise ConfigError("--resume", str(out), "the same settings as the run being resumed "
                              f"(these differ: {', '.join(changed)})")
    elif state_path.exists():
        raise ConfigError("--out", str(out), "a new run directory (this one holds a run: pass "
                          "--resume to continue it)")
    state: dict[str, Any] = _read_state(state_path) if resume else {}
    prep = prepare(config)
    remove_stale_temporaries(out)
    with torch_threads(config.torch_threads):
        return _run_stages(config, prep, out, state, resume=resume, progress=progress)


def _run_stages(config: SearchConfig, prep: Prepared, out: Path, state: dict[str, Any], *,
                resume: bool, progress: bool) -> RunPaths:
    """The stages of :func:`run_search`, after its checks."""
    state_path = out / STATE
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "log.txt", echo=progress)
    if not resume:
        atomic_write_text(out / "config.yaml",
                          dump_yaml(portable_paths(config).model_dump(mode="json")))
        log(f"run {out}: method {config.method}, seed {config.seed}, env {config.env_id}, "
            f"target {config.target}, device {prep.device}")
        log(prep.defaults.describe())
    else:
        log(f"resuming {out}: done {', '.join(s for s in STAGES if s in state) or 'nothing'}")

    clock = StageClock(out / STAGE_TIME)

    def finish(stage: str, **outputs: Any) -> None:
        """Record ``stage`` as done, with its wall time over every session of the run."""
        state[stage] = {"done": True, **outputs, "wall_time_s": clock.seconds(stage)}
        atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")
        log(f"stage {stage} done")

    # teacher ----------------------------------------------------------------------------
    if "teacher" not in state:
        teacher_path = prep.teacher_path
        if teacher_path is None and config.distills:
            log(f"training the teacher ({config.budget.teacher_steps:,} steps, reference "
                "network)")
            teacher_cfg = prep.rl.model_copy(update={
                "total_steps": config.budget.teacher_steps, "arch": None})
            with clock.timing("teacher"):
                result = train(teacher_cfg, out / "teacher", resume=(out / "teacher").is_dir(),
                               progress=progress)
            finish("teacher", path=portable_path(str(result.checkpoint.resolve())))
        else:
            if teacher_path is not None and config.distills:
                log(f"teacher: {teacher_path}")
            finish("teacher", path=teacher_path and portable_path(teacher_path))
    teacher_path = state["teacher"]["path"] and resolve_path(state["teacher"]["path"], None)
    teacher: Teacher | None = None
    if config.distills and teacher_path is not None:
        teacher = load_teacher(teacher_path, field="teacher")

    # search -----------------------------------------------------------------------------
    if "search" not in state:
        with clock.timing("search"):
            info = _search_stage(prep, teacher, out, resume=resume, progress=progress, log=log)
        finish("search", **info)
    arch = load_arch(str(out / "arch.yaml"), field="arch.yaml")
    workload = prep.workload(arch, name=arch.name)

    # hardware ---------------------------------------------------------------------------
    if "hardware" not in state:
        if resume and config.method != "hand_designed":
            # the hardware is priced (or derived) as the search priced its architectures
            check_scoring(out / "search", resumed_work=out / "search")
        with clock.timing("hardware"):
            choice = _hardware_stage(config, prep, workload, state["search"], out)
        atomic_write_text(out / "hardware.yaml", dump_yaml(choice.description))
        log(f"hardware: {choice.label} ({choice.how})")
        finish("hardware", choice=asdict(choice))
    choice = HardwareChoice(**state["hardware"]["choice"])

    # retrain ----------------------------------------------------------------------------
    if "retrain" not in state:
        log(f"retraining {arch.name} for {config.budget.retrain_steps:,} steps"
            f"{' with distillation' if teacher is not None else ''}")
        with clock.timing("retrain"):
            result = prep.train_agent(arch, config.budget.retrain_steps, teacher,
                                      out / "retrain", progress=progress)
        finish("retrain", checkpoint=str(result.checkpoint.relative_to(out)),
               env_steps=result.global_step)
    # on the CPU: the workload export and the hardware models
    agent = load_agent(out / state["retrain"]["checkpoint"], field="retrain checkpoint")

    # evaluate ---------------------------------------------------------------------------
    if "evaluate" not in state:
        with clock.timing("evaluate"):
            score = prep.score_agent(out / state["retrain"]["checkpoint"],
                                     config.budget.eval_episodes,
                                     episode_seed=10_000 + config.seed,
                                     field="retrain checkpoint")
        atomic_write_text(out / "eval.json", json.dumps(score.to_dict(), indent=2) + "\n")
        log(f"test score {score.mean_return:.2f} +- {score.std_return:.2f} over "
            f"{score.episodes} episodes")
        finish("evaluate", **score.to_dict())

    # measure ----------------------------------------------------------------------------
    trained_workload = agent.model.workload(batch=1)
    atomic_write_text(out / "workload.yaml", dump_yaml(trained_workload.to_dict()))
    if "measure" not in state:
        with clock.timing("measure"):
            measured = prep.target.measure(trained_workload, choice)
            reference = _hand_designed(prep, choice, teacher)
        atomic_write_text(out / "measurement.json", json.dumps(asdict(measured), indent=2))
        log(f"measured: {measured.fps:,.0f} FPS, latency {measured.latency_s * 1e6:.2f} us"
            + (f", energy {measured.energy_pj * 1e-6:.3f} uJ" if measured.energy_pj else ""))
        finish("measure", fps=measured.fps, latency_s=measured.latency_s,
               energy_pj=measured.energy_pj, resources=measured.resources,
               reference=reference)

    # results ----------------------------------------------------------------------------
    measure, evaluation = state["measure"], state["evaluate"]
    env_steps = int(state["search"].get("env_steps", 0)) + int(state["retrain"]["env_steps"])
    row = RunResult(
        method=config.method, seed=config.seed,
        lam=config.cost.lam if config.method in ("a3cs", "a3cs_no_distill", "random",
                                                 "evolution") else None,
        env_id=config.env_id, target=portable_paths(config).target, score_mean=evaluation["mean_return"],
        score_std=evaluation["std_return"], episodes=int(evaluation["episodes"]),
        fps=measure["fps"], latency_s=measure["latency_s"], energy_pj=measure["energy_pj"],
        flops=trained_workload.flops, params=trained_workload.stored_weight_words,
        resources=measure["resources"], arch_path="arch.yaml", hw_path="hardware.yaml",
        wall_time_s=sum(float(v["wall_time_s"]) for v in state.values()), env_steps=env_steps,
        device=str(prep.device), label=config.label)
    json_path, csv_path = write_results(out, [row])
    from a3cs.plotting import plot_pareto

    figure = plot_pareto([row, *_reference_rows(out)], "fps", out / "pareto_fps",
                         title=f"{config.env_id}: {config.method} (seed {config.seed})")
    if "results" not in state:
        finish("results")
    reference = measure.get("reference") or {}
    if reference.get("fps"):
        scored = reference.get("score_mean") is not None
        own = reference.get("fps_own_hardware")
        log(f"what the search bought: the agent scores {row.score_mean:.2f} at "
            f"{row.fps:,.0f} FPS; the hand-designed network "
            + (f"(the teacher) scores {reference['score_mean']:.2f} at " if scored else "runs at ")
            + f"{reference['fps']:,.0f} FPS on the same hardware: "
            f"{row.fps / reference['fps']:.2f}x its speed"
            + (f", {row.score_mean - reference['score_mean']:+.2f} score" if scored else "")
            + (f"; on its own searched hardware {own:,.0f} FPS: {row.fps / own:.2f}x"
               if own else "")
            + (_training_gap(teacher_path, config.budget.retrain_steps) if scored else ""))
    log(f"results: {json_path}")
    log(f"pareto plot: {figure.png}")
    return RunPaths(out, json_path, csv_path, figure.png, figure.svg)


def _training_gap(teacher_path: str | None, retrain_steps: int) -> str:
    """Said after the scores when the teacher trained much longer than the agent (the short
    default search), so that its score is not read as the search's cost."""
    from a3cs.rl.checkpoint import read_checkpoint

    if teacher_path is None:
        return ""
    try:
        teacher_steps = int(read_checkpoint(teacher_path, field="teacher")["global_step"])
    except (ConfigError, KeyError, TypeError, ValueError):
        return ""
    if teacher_steps < 3 * retrain_steps:
        return ""
    return (f" (the teacher trained {teacher_steps:,} steps, the agent {retrain_steps:,}: "
            "docs/search.md compares them at equal budgets, e.g. experiments/configs/"
            "cosearch_minatar_evolution.yaml)")


def _read_state(path: Path) -> dict[str, Any]:
    """``state.json`` of a run being resumed (its completed stages).

    Raises:
        ConfigError: the file is damaged (not JSON, not a mapping of stages).
    """
    text = read_text(path, field="--resume", expected="a run directory's state.json")
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("--resume", str(path), f"a state.json that is valid JSON (parse "
                          f"error at line {exc.lineno}): start a new run") from None
    if not isinstance(state, dict) or not all(
            stage in STAGES and isinstance(done, dict) for stage, done in state.items()):
        raise ConfigError("--resume", str(path), "a state.json mapping stages "
                          f"({', '.join(STAGES)}) to what they left: start a new run")
    return state


def _hand_designed(prep: Prepared, choice: HardwareChoice,
                   teacher: Teacher | None) -> dict[str, float | None]:
    """The hand-designed network beside the searched agent: its FPS on the chosen hardware and,
    when the teacher is that network (the shipped teachers are), the teacher's test score over
    the same episodes."""
    config = prep.config
    reference = reference_arch(prep.obs_shape)
    workload = prep.workload(reference, name="hand_designed")
    try:
        fps: float | None = prep.target.measure(workload, choice).fps
    except ConfigError:  # e.g. a chunked accelerator sized for the searched layers only
        fps = None
    # what the hand_designed method gets: the network on its own searched hardware
    own_fps = prep.target.measure(workload, prep.target.choose(workload, config.seed)).fps
    score = None
    if teacher is not None and getattr(teacher.model, "arch", None) == reference:
        score = prep.score_policy(teacher.model, config.budget.eval_episodes,
                                  episode_seed=10_000 + config.seed).mean_return
    return {"fps": fps, "fps_own_hardware": own_fps, "score_mean": score}


def _reference_rows(out: Path) -> list[RunResult]:
    """Result rows of other runs in the same parent folder (so a run's plot shows its
    neighbours, e.g. the baselines of an experiment)."""
    from a3cs.results import read_results

    rows: list[RunResult] = []
    for other in sorted(out.parent.glob("*/results.json")):
        if other.parent != out:
            try:
                rows.extend(read_results(other.parent))
            except ConfigError:
                continue
    return rows


def _load_target_state(target: Target, path: Path) -> None:
    """Restore the co-searched accelerator distribution ``target`` from ``path``.

    Raises:
        ConfigError: the file is not the state this search wrote (damaged after the fact).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target.load_state_dict(torch.load(path, weights_only=True))
    except Exception:  # unpickling bytes or a wrong dict fails in many ways: one message
        raise ConfigError("--resume", str(path), "the co-search's target_state.pt as it "
                          "wrote it: restore it or start a new --out directory") from None


def _hardware_stage(config: SearchConfig, prep: Prepared, workload: Workload,
                    search_state: dict[str, Any], out: Path) -> HardwareChoice:
    """The hardware the method gives the searched architecture's ``workload``."""
    if config.method in ("a3cs", "a3cs_no_distill") and \
            config.supernet.accelerator_research_every:
        return prep.target.choose(workload, config.seed)  # Auto-NBA's last re-search
    if config.method in ("a3cs", "a3cs_no_distill") and (out / "search" /
                                                      "target_state.pt").is_file():
        _load_target_state(prep.target, out / "search" / "target_state.pt")
        return prep.target.derived_for(workload)  # the co-searched hardware
    if "hardware_choice" in search_state:
        return HardwareChoice(**search_state["hardware_choice"])
    return prep.target.choose(workload, config.seed)


def _search_stage(prep: Prepared, teacher: Teacher | None, out: Path, *, resume: bool,
                  progress: bool, log: RunLog) -> dict[str, Any]:
    """Run the method's search and write ``arch.yaml``; return what ``state.json`` keeps."""
    config = prep.config
    stage = out / "search"
    info: dict[str, Any] = {}
    arch: Arch
    if config.method == "hand_designed":
        arch = reference_arch(prep.obs_shape)
        log(f"architecture: the hand-designed {arch.name}")
    elif config.method in ("a3cs", "a3cs_no_distill", "sequential"):
        from a3cs.search.cosearch import run_supernet_search

        co = config.method != "sequential"
        lam = config.cost.lam if co else 0.0
        log(f"{'co-search' if co else 'hardware-agnostic NAS'}: "
            f"{config.budget.warmup_steps:,} warm-up + {config.budget.search_steps:,} search "
            f"steps, lambda {lam:g}{', distillation' if teacher is not None else ''}")
        rl = prep.rl.model_copy(update={
            "teacher": portable_path(teacher.source) if teacher else None})
        outcome = run_supernet_search(config, rl, prep.space, prep.target, stage,
                                      lam=lam, search_hardware=co, resume=resume,
                                      progress=progress)
        arch = outcome.arch
        if co:
            buffer = io.BytesIO()
            torch.save(prep.target.state_dict(), buffer)
            atomic_write_bytes(stage / "target_state.pt", buffer.getvalue())
        info.update(env_steps=outcome.env_steps, expected_latency_s=outcome.expected_latency_s,
                    reference_latency_s=outcome.reference_latency_s, final_lambda=outcome.lam)
        log(f"derived {arch.name}: expected latency {outcome.expected_latency_s * 1e6:.2f} us "
            f"(reference {outcome.reference_latency_s * 1e6:.2f} us)")
    else:
        from a3cs.search.multitrial import run_multitrial

        trial = run_multitrial(prep, teacher, stage, progress=progress, log=log)
        arch = trial.arch
        info.update(env_steps=trial.env_steps, trials=trial.trials,
                    hardware_choice=asdict(trial.hardware))
    atomic_write_text(out / "arch.yaml", dump_yaml(arch.to_dict()))
    return info
