"""SRAM leakage per buffer size from CACTI 7, written as hw_sim's default table.

hw_sim's static power (``hw_sim.power``) needs an SRAM leakage for each on-chip buffer.
This script runs CACTI 7.0 (HewlettPackard/cacti; build it with ``make`` in its checkout)
on single-bank scratchpad RAMs of 1 KiB to 1 MiB at 45 nm (the CACTI node nearest Aladdin's
40 nm, which the logic figures come from), one read/write port, 64-bit words, the shipped
``cache.cfg``'s other settings (ITRS high-performance cells and periphery, 360 K), and writes
``hw_sim/cacti_sram_45nm.py``: size in KiB -> leakage in mW (CACTI's "Total leakage power of
a bank" plus its "Total gate leakage power of a bank"), with the settings and CACTI's commit
in its header.

    python experiments/cacti_sram.py --cacti /path/to/cacti          # the folder with ./cacti
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from a3cs_common.cli import OneLineParser, script_main
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, check_output_path, read_text

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "hw_sim" / "cacti_sram_45nm.py"
SIZES_KIB = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# What differs from CACTI's shipped cache.cfg: a scratchpad of 64-bit words at 45 nm.
SETTINGS = {
    "-block size (bytes)": "8",
    "-associativity": "1",
    "-technology (u)": "0.045",
    "-output/input bus width": "64",
    "-cache type": '"ram"',
}


def config(template: str, size_bytes: int) -> str:
    """CACTI's ``cache.cfg`` with the size and :data:`SETTINGS` replaced."""
    text = re.sub(r"^-size \(bytes\) .*$", f"-size (bytes) {size_bytes}", template, flags=re.M)
    for key, value in SETTINGS.items():
        text, count = re.subn(rf"^{re.escape(key)} .*$", f"{key} {value}", text, flags=re.M)
        if count != 1:
            raise ConfigError("cache.cfg", key, "exactly one line setting it (CACTI 7's "
                              "shipped cache.cfg)")
    return text


def leakage_mw(cacti: Path, cfg_text: str) -> tuple[float, float]:
    """(subthreshold, gate) leakage of one bank, mW, from one CACTI run."""
    with tempfile.TemporaryDirectory(prefix="cacti_") as tmp:
        cfg = Path(tmp) / "sram.cfg"
        cfg.write_text(cfg_text)
        done = subprocess.run([str(cacti / "cacti"), "-infile", str(cfg)], cwd=cacti,
                              capture_output=True, text=True, check=True)

    def grab(label: str) -> float:
        match = re.search(rf"{re.escape(label)} \(mW\): ([0-9.eE+-]+)", done.stdout)
        if match is None:
            raise RuntimeError(f"CACTI printed no '{label}':\n{done.stdout[-2000:]}")
        return float(match.group(1))

    return grab("Total leakage power of a bank"), grab("Total gate leakage power of a bank")


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cacti", type=Path, required=True,
                        help="CACTI 7 checkout with the built ./cacti binary")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"default {OUTPUT}")
    args = parser.parse_args(argv)
    binary = args.cacti / "cacti"
    if not binary.is_file():
        raise ConfigError("--cacti", str(args.cacti), "a CACTI 7 checkout holding the "
                          "built ./cacti binary (run make there)")
    template = read_text(args.cacti / "cache.cfg", field="--cacti",
                         expected="CACTI 7's shipped cache.cfg")
    config(template, SIZES_KIB[0] * 1024)  # a cache.cfg it cannot adapt fails here, not later
    check_output_path(args.out, field="--out")
    commit = subprocess.run(["git", "-C", str(args.cacti), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    rows = []
    for kib in SIZES_KIB:
        sub, gate = leakage_mw(args.cacti, config(template, kib * 1024))
        rows.append((kib, sub, gate))
        print(f"{kib:5d} KiB  leakage {sub:9.4f} mW  gate {gate:9.4f} mW", flush=True)
    settings = ", ".join(f"{k.lstrip('-')} {v}" for k, v in SETTINGS.items())
    table = "\n".join(f"    {kib}: {sub + gate:.6g},  # {sub:.6g} + {gate:.6g} (gate)"
                      for kib, sub, gate in rows)
    header = textwrap.fill(
        f"Written by ``python experiments/cacti_sram.py --cacti CACTI_CHECKOUT`` from CACTI "
        f"7.0 (github.com/HewlettPackard/cacti, commit {commit}): one bank, its shipped "
        f"``cache.cfg`` with {settings}.  Each value is CACTI's \"Total leakage power of a "
        f"bank\" plus its \"Total gate leakage power of a bank\".", width=92)
    atomic_write_text(args.out, f'''"""SRAM leakage by buffer size: CACTI 7.0, 45 nm (generated; do not edit).

{header}
"""

# Buffer size in KiB -> static power in mW.
SRAM_LEAKAGE_MW: dict[int, float] = {{
{table}
}}
''')
    print(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
