"""SRAM leakage by buffer size: CACTI 7.0, 45 nm (generated; do not edit).

Written by ``python experiments/cacti_sram.py --cacti CACTI_CHECKOUT`` from CACTI 7.0
(github.com/HewlettPackard/cacti, commit 1ffd8dfb10303d306ecd8d215320aea07651e878): one
bank, its shipped ``cache.cfg`` with block size (bytes) 8, associativity 1, technology (u)
0.045, output/input bus width 64, cache type "ram".  Each value is CACTI's "Total leakage
power of a bank" plus its "Total gate leakage power of a bank".
"""

# Buffer size in KiB -> static power in mW.
SRAM_LEAKAGE_MW: dict[int, float] = {
    1: 1.38972,  # 1.33637 + 0.0533498 (gate)
    2: 3.09919,  # 2.99804 + 0.101148 (gate)
    4: 6.10493,  # 5.92551 + 0.179417 (gate)
    8: 11.3124,  # 10.9893 + 0.32305 (gate)
    16: 22.3791,  # 21.7743 + 0.604782 (gate)
    32: 42.0241,  # 40.9298 + 1.09435 (gate)
    64: 84.0484,  # 81.8597 + 2.18871 (gate)
    128: 153.526,  # 149.745 + 3.78133 (gate)
    256: 307.053,  # 299.49 + 7.56267 (gate)
    512: 614.105,  # 598.98 + 15.1253 (gate)
    1024: 1228.21,  # 1197.96 + 30.2507 (gate)
}
