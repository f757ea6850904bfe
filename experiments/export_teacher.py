"""Export a trained checkpoint as a slim teacher (network, config and spaces only: no optimizer,
environments or metrics), e.g. the one `a3cs search` ships for MinAtar Breakout:

    python experiments/export_teacher.py experiments/results/rl_scores/breakout_s1/checkpoint.pt \
        a3cs/data/teachers/minatar_breakout.pt
"""

from __future__ import annotations

import argparse

from a3cs.rl.checkpoint import load_agent, read_checkpoint, save_checkpoint

KEEP = ("config", "arch", "spaces", "model", "global_step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by a3cs train")
    parser.add_argument("out", help="where the slim teacher goes")
    args = parser.parse_args()
    data = read_checkpoint(args.checkpoint)
    slim = {key: data[key] for key in KEEP}
    save_checkpoint(args.out, slim)
    agent = load_agent(args.out)  # the slim file loads as an agent (and so as a teacher)
    print(f"{args.out}: {agent.arch.name}, {agent.global_step:,} steps")


if __name__ == "__main__":
    main()
