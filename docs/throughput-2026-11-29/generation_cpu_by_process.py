"""Generation with 1 or 2 actors (120 patching pairs, the bench's settings): rows/s from the
manifest and every process's CPU seconds over the stage. Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/generation_cpu_by_process.py 1 /tmp/gen
    .venv/bin/python docs/throughput-2026-11-29/generation_cpu_by_process.py 2 /tmp/gen
"""
import os, sys, time
from pathlib import Path
from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.generate import generate
from selfexplain.jobs.ray_session import ray_session
actors = int(sys.argv[1]); out = sys.argv[2]
def snap():
    d = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit(): continue
        try:
            st = (p / "stat").read_text(); cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
        except Exception: continue
        f = st.rsplit(")", 1)[1].split()
        d[p.name] = (cmd or st.split("(")[1].split(")")[0], (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))
    return d
with ray_session(RayConfig(num_cpus=4)):
    time.sleep(3)
    config = load_config("tiny", ["target=smollm2-135m", "task=patching", f"output_dir={out}", f"name=a{actors}",
        "generate.max_items=120", "generate.items_per_shard=4", f"generate.num_actors={actors}",
        "generate.cpus_per_actor=1", "generate.held_out_fraction=0.25"])
    a = snap(); t = time.time()
    generate(config)
    b = snap(); wall = time.time() - t
    m = (config.corpus_dir / "manifest.json").read_json()
    print("wall", round(wall, 1), "rows/s", m["rows_per_second"], "after first", m["rows_per_second_after_first_shard"], "first", m["first_shard_seconds"])
    use = []
    for pid, (cmd, cpu) in b.items():
        use.append((cpu - a.get(pid, (cmd, 0))[1], pid, cmd))
    tot = sum(u for u, *_ in use)
    print("total cpu", round(tot, 1), "of", round(2 * wall, 1))
    for u, pid, cmd in sorted(use, reverse=True)[:14]:
        print(f"{u:7.1f} {pid:>7} {cmd}")
