"""CPU seconds of every process (and its busiest threads) over a window, from /proc: what else
runs while a Ray Train worker trains. Start a training run, then during its steady state:
    python3 docs/throughput-2026-11-29/proc_cpu.py 30"""
import os, sys, time
HZ = os.sysconf("SC_CLK_TCK")
def snap():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            with open(f"/proc/{pid}/stat") as f: s = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f: cmd = f.read().replace(b"\0", b" ").decode()[:110]
            threads = {}
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as f: t = f.read()
                    name = t[t.index("(")+1:t.rindex(")")]; fs = t[t.rindex(")")+2:].split()
                    threads[tid] = (name, (int(fs[11]) + int(fs[12])) / HZ)
                except OSError: pass
        except OSError: continue
        fs = s[s.rindex(")")+2:].split()
        out[pid] = (cmd, (int(fs[11]) + int(fs[12])) / HZ, threads)
    return out
secs = float(sys.argv[1]); a = snap(); t0 = time.time(); time.sleep(secs); b = snap(); wall = time.time() - t0
rows = []
for pid, (cmd, cpu, th) in b.items():
    d = cpu - a.get(pid, (None, 0.0, {}))[1]
    if d > 0.005: rows.append((d, pid, cmd, th, a.get(pid, (None, 0, {}))[2]))
rows.sort(reverse=True)
print(f"window {wall:.1f} s, total {sum(r[0] for r in rows):.2f} CPU s")
for d, pid, cmd, th, tha in rows[:25]:
    print(f"{d:7.2f} s {100*d/wall:5.1f}%  {pid:>7} {cmd}")
    tops = sorted(((c - tha.get(t, ("", 0))[1], n) for t, (n, c) in th.items()), reverse=True)[:4]
    print("           " + ", ".join(f"{n}:{c:.2f}" for c, n in tops if c > 0.01))
