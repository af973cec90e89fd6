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


def patching_cases():
    """SmolLM2-135M on 2 threads, its layers, and the patching bench's pairs as (original ids,
    the counterfactual's activations at every layer, the positions after the shared prefix).
    Needs tests/bench on the path."""
    from test_bench_patching import PAIRS

    from selfexplain.models import load_model
    from selfexplain.models.patching import capture_component

    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    layers = list(range(model.config.num_hidden_layers))
    cases = []
    for prompt, counterfactual in PAIRS:
        ids, cf_ids = (torch.tensor(tokenizer(text).input_ids) for text in (prompt, counterfactual))
        first_difference = int((ids != cf_ids).nonzero()[0, 0])
        cases.append((ids, capture_component(model, cf_ids, layers), list(range(first_difference, len(ids)))))
    return model, layers, cases


def sweep_after_prefix(model, layers, ids, sources, positions, **switches):
    """The residual sweep over every layer, rows from their layer, no-op sites skipped."""
    from selfexplain.models.patching import sweep

    return torch.no_grad()(sweep)(model, ids, [sources[layer] for layer in layers], [[layer] for layer in layers],
                                  positions, "residual", from_their_layer=True, skip_noops=True, **switches)
