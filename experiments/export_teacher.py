"""Export a trained checkpoint as a slim teacher (network, config and spaces only: no optimizer,
environments or metrics), e.g. the one `a3cs search` ships for MinAtar Breakout:

    python experiments/export_teacher.py experiments/results/rl_scores/breakout_s1/checkpoint.pt \
        a3cs/data/teachers/minatar_breakout.pt
"""

from __future__ import annotations

import sys

from a3cs.rl.checkpoint import export_agent, load_agent
from a3cs_common.cli import OneLineParser, script_main
from a3cs_common.io import check_output_path


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by a3cs train")
    parser.add_argument("out", help="where the slim teacher goes")
    args = parser.parse_args(argv)
    # Both checked before anything is written: export_agent writes ``out`` first and loads the
    # agent back from it after, so a damaged checkpoint would replace a good teacher there.
    load_agent(args.checkpoint, field="checkpoint")
    check_output_path(args.out, field="out")
    agent = export_agent(args.checkpoint, args.out)
    print(f"{args.out}: {agent.arch.name}, {agent.global_step:,} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
