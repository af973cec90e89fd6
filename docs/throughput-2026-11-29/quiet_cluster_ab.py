"""One-worker ZeRO-0 training (the overhead bench's settings) on the default local cluster and on
quieter ones, alternating; tokens/s, the compute threads' cores and preemptions, and the CPU of
every other process. Variants (comma-separated, second argument):
  default   the cluster as selfexplain started it before stop 26, Ray Train's placement-group cleaner included
  nocleaner + the cleaner left out (it polls the state API every second): selfexplain's default since stop 26
  nosoft    + idle pooled workers killed after 1 s (RAY_num_workers_soft_limit=0)
  nodash    + no dashboard (no state API)
Run from the repository root (first argument: a scratch folder, reused):
    .venv/bin/python docs/throughput-2026-11-29/quiet_cluster_ab.py /tmp/qa default,nocleaner 2"""
import os, subprocess, sys, time

out, variants, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]) if len(sys.argv) > 3 else 2
mode = sys.argv[4] if len(sys.argv) > 4 else "ab"
if mode == "run":  # one run, in a child process
    import shutil
    import ray
    from ray.train.v2.api import data_parallel_trainer as dpt
    from selfexplain.config import RayConfig, load_config
    from selfexplain.jobs import ray_session as rs
    from selfexplain.jobs.generate import generate
    from selfexplain.train.trainer import train
    variant = sys.argv[2]
    steps = ["nocleaner", "nosoft", "nodash"]
    on = set(steps[:steps.index(variant) + 1]) if variant in steps else set()
    if "nocleaner" in on:
        make = dpt.DataParallelTrainer._create_default_callbacks
        dpt.DataParallelTrainer._create_default_callbacks = lambda self: [
            c for c in make(self) if not isinstance(c, dpt.PlacementGroupCleanerCallback)]
    else:  # Ray Train's own trainer, as before stop 26
        import selfexplain.train.trainer as trainer_module
        trainer_module.started_local_cluster = lambda: False
    if "nosoft" in on:
        os.environ["RAY_num_workers_soft_limit"] = "0"
    if "nodash" in on:
        init = ray.init
        def lean(*a, **k):
            k["include_dashboard"] = False; k.pop("dashboard_host", None)
            return init(*a, **k)
        rs.ray.init = lean
    c = load_config("tiny", ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40", "generate.num_actors=1",
                             "generate.held_out_fraction=0.1", "train.batch_size=8", "train.epochs=1",
                             "train.torch_threads=2", "name=zero0", "train.num_workers=1", "train.zero_stage=0"])
    for leftover in ("ray_train", "explainer", "train_metrics.json"):
        p = c.run_dir.local_path / leftover
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    with rs.ray_session(RayConfig(num_cpus=4)):
        generate(c)
        sampler = subprocess.Popen([sys.executable, __file__, out, variant, "0", "sample"])
        train(c)
        sampler.wait()
    m = (c.run_dir / "train_metrics.json").read_json()
    print(f"RESULT {variant} {m['tokens_per_second']:.1f}", flush=True)
    sys.exit()
if mode == "sample":  # the sampler: 20 s of steady training, 25 s after the worker appears
    HZ = os.sysconf("SC_CLK_TCK")
    def worker():
        for _ in range(120):
            found = subprocess.run(["pgrep", "-f", "ray::RayTrainWorker"], capture_output=True, text=True).stdout.split()
            if found: return found[0]
            time.sleep(0.5)
    def snap():
        procs = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                s = open(f"/proc/{pid}/stat").read(); fs = s[s.rindex(")") + 2:].split()
                name = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:60]
                procs[pid] = (name, (int(fs[11]) + int(fs[12])) / HZ)
            except OSError: pass
        return procs
    def threads(pid):
        out = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            s = open(f"/proc/{pid}/task/{tid}/stat").read(); fs = s[s.rindex(")") + 2:].split()
            sw = open(f"/proc/{pid}/task/{tid}/status").read().split("nonvoluntary_ctxt_switches:")[1].split()[0]
            out[tid] = ((int(fs[11]) + int(fs[12])) / HZ, int(sw))
        return out
    pid = worker(); time.sleep(25)
    a, ta, t0 = snap(), threads(pid), time.time(); time.sleep(20); b, tb, wall = snap(), threads(pid), time.time() - t0
    compute = sorted(((tb[t][0] - ta.get(t, (0, 0))[0], tb[t][1] - ta.get(t, (0, 0))[1]) for t in tb), reverse=True)[:2]
    others = {pid_: (n, cpu - a.get(pid_, (n, 0))[1]) for pid_, (n, cpu) in b.items() if pid_ != pid}
    busy = sorted(((cpu, n) for n, cpu in others.values() if cpu > 0.005), reverse=True)
    print(f"SAMPLE {sys.argv[2]}: compute threads {sum(c for c, _ in compute) / wall:.2f} cores, "
          f"preemptions {sum(p for _, p in compute) / wall:.0f}/s; others {sum(c for c, _ in busy) / wall:.3f} cores "
          f"in {len(busy)} processes: " + ", ".join(f"{(n.split() or ['?'])[0][-22:]} {c:.2f}" for c, n in busy[:8]), flush=True)
    sys.exit()
for round_ in range(rounds):
    for variant in variants:
        subprocess.run([sys.executable, __file__, out, variant, "1", "run"], stdout=open(f"{out}/{variant}{round_}.log", "w"),
                       stderr=subprocess.STDOUT)
        print(*[l.strip() for l in open(f"{out}/{variant}{round_}.log") if l.startswith(("RESULT", "SAMPLE"))], flush=True)
