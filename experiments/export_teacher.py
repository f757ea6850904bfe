"""Export a trained checkpoint as a slim teacher (network, config and spaces only: no optimizer,
environments or metrics), e.g. the one `a3cs search` ships for MinAtar Breakout:

    python experiments/export_teacher.py experiments/results/rl_scores/breakout_s1/checkpoint.pt \
        a3cs/data/teachers/minatar_breakout.pt
"""

from __future__ import annotations

import argparse

from a3cs.rl.checkpoint import export_agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by a3cs train")
    parser.add_argument("out", help="where the slim teacher goes")
    args = parser.parse_args()
    agent = export_agent(args.checkpoint, args.out)
    print(f"{args.out}: {agent.arch.name}, {agent.global_step:,} steps")


if __name__ == "__main__":
    main()
