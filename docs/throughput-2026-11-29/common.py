"""Pieces the diagnostic scripts of this folder share."""
import time

import torch


def random_batches(count: int, seed: int = 0) -> list[dict]:
    """``count`` collated batches of 8 random sequences of 40-80 tokens, the answer their last 6."""
    from selfexplain.train.examples import collate

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        lengths = torch.randint(40, 80, (8,), generator=generator)
        ids = [torch.randint(100, 40000, (int(n),), generator=generator).tolist() for n in lengths]
        batches.append(collate(ids, [int(n) - 6 for n in lengths], 0))
    return batches


def plain_epoch(model, optimizer, examples: dict, seed: int, pad_id: int) -> str:
    """One epoch of the plain torch loop on the worker's micro-batches (batch 8); its wall and CPU
    seconds and tokens/s, the first step left out; and per step, the process's minor page
    faults and its involuntary (preempted) and voluntary context switches."""
    import resource

    from selfexplain.train.examples import answer_only_loss
    from selfexplain.train.loop import epoch_micro_batches, micro_batch_inputs

    before = resource.getrusage(resource.RUSAGE_SELF)
    stats = []
    for picked in epoch_micro_batches(examples, seed, 0, 8):
        wall, cpu = time.perf_counter(), time.process_time()
        batch = micro_batch_inputs(examples, picked, seed, 0, pad_id)
        loss = answer_only_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()
        stats.append((time.perf_counter() - wall, time.process_time() - cpu, int(batch["attention_mask"].sum())))
    after = resource.getrusage(resource.RUSAGE_SELF)
    per_step = {name: (getattr(after, f"ru_{name}") - getattr(before, f"ru_{name}")) / len(stats)
                for name in ("minflt", "nivcsw", "nvcsw")}
    steady = stats[1:]
    wall, cpu, tokens = (sum(column) for column in zip(*steady))
    return " ".join(f"{name}/step {value:.0f}" for name, value in per_step.items()) + f" steps {len(steady)} wall {wall:.1f} cpu {cpu:.1f} cpu/wall {cpu / wall:.2f} tok/s {tokens / wall:.1f}"
