"""Where a generation stage's first shard goes: timestamps from the driver (stage start, items
planned) and from inside each actor (constructor start, model loaded, each shard's start and end),
for the generation-scaling bench's settings. Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/generation_first_shard.py /tmp/gfs [actors]
SETTLE=15 waits that many seconds after the cluster starts; with PYTHONPROFILEIMPORTTIME=1 the
actor's imports land in its worker-*-<pid>.err under /tmp/ray/session_latest/logs/."""
import os
import sys
import time
from pathlib import Path

from selfexplain.config import RayConfig, load_config
from selfexplain.jobs import generate as generate_module
from selfexplain.jobs.ray_session import ray_session

out, actors = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
STAMPS = Path(out) / "stamps.txt"


def stamp(what: str, at: float | None = None) -> None:
    with STAMPS.open("a") as file:
        file.write(f"{at or time.time():.3f} {os.getpid()} {what}\n")


class TimedWorker(generate_module.GroundTruthWorker):
    def __init__(self, *args, **kwargs):
        import sys

        import psutil

        stamp("actor process started", psutil.Process().create_time())
        stamp("actor constructor start")
        stamp(f"(torch imported before the constructor: {'torch' in sys.modules})")
        super().__init__(*args, **kwargs)
        stamp("actor model loaded")

    def __call__(self, batch):
        stamp("shard start")
        result = super().__call__(batch)
        stamp("shard end")
        return result


Path(out).mkdir(parents=True, exist_ok=True)
STAMPS.unlink(missing_ok=True)
config = load_config("tiny", ["target=smollm2-135m", "task=patching", f"output_dir={out}", f"name=a{actors}-{time.time():.0f}",
                              "generate.max_items=160", "generate.items_per_shard=4", f"generate.num_actors={actors}",
                              "generate.cpus_per_actor=1", "generate.held_out_fraction=0.25"])
with ray_session(RayConfig(num_cpus=4)):
    stamp("session started")
    time.sleep(float(os.environ.get("SETTLE", "0")))
    original_plan = generate_module.plan_shards

    def plan_shards(*args, **kwargs):
        stamp("items planned")
        return original_plan(*args, **kwargs)

    generate_module.plan_shards = plan_shards
    stamp("generate start")
    generate_module.generate(config, worker=TimedWorker)
    stamp("generate end")
lines = [line.split(" ", 2) for line in STAMPS.read_text().splitlines()]
start = float(next(t for t, _, what in lines if what == "generate start"))
seen = set()
for t, pid, what in sorted(lines, key=lambda line: float(line[0])):
    if what in ("shard start", "shard end") and (pid, what) in seen:
        continue
    seen.add((pid, what))
    print(f"{float(t) - start:7.2f} s  pid {pid}  {what}")
print((config.corpus_dir / "manifest.json").read_json().get("first_shard_seconds"))
