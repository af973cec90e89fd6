"""Ground-truth generation with one Ray Data actor against two, on the same patching pairs of
SmolLM2-135M (every layer, about 90 sites a pair). Each actor has one CPU and one torch thread;
on this 2-core machine two actors are the whole machine.

Prints rows/s of each and the ratio twice: over the whole stage, and after its first shard (the
fixed cost of planning, starting an actor and loading the model is paid once per stage, in
parallel by the two actors, so it weighs less the more items a stage has)."""

from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.generate import generate
from selfexplain.jobs.ray_session import ray_session

PAIRS = 160


def test_two_generation_actors_against_one(tmp_path):
    rates = {}
    with ray_session(RayConfig(num_cpus=4)):
        for actors in (1, 2):
            config = load_config(
                "tiny",
                [
                    "target=smollm2-135m",
                    "task=patching",
                    f"output_dir={tmp_path}",
                    f"name=actors{actors}",
                    f"generate.max_items={PAIRS}",
                    "generate.items_per_shard=4",
                    f"generate.num_actors={actors}",
                    "generate.cpus_per_actor=1",
                    "generate.held_out_fraction=0.25",
                ],
            )
            generate(config)
            rates[actors] = (config.corpus_dir / "manifest.json").read_json()
    one, two = rates[1], rates[2]
    assert one["rows"] == two["rows"] > 0  # the same corpus either way
    lines = [f"\ngeneration, patching, SmolLM2-135M, {PAIRS} pairs, {one['rows']} rows:"]
    for label, key in (
        ("whole stage", "rows_per_second"),
        ("after the first shard", "rows_per_second_after_first_shard"),
    ):
        lines.append(
            f"  {label:<22} 1 actor {one[key]:6.1f} rows/s, 2 actors {two[key]:6.1f} rows/s: "
            f"{two[key] / one[key]:.2f}x"
        )
    lines.append(
        f"  stage seconds: 1 actor {one['seconds']:.0f} (first shard at "
        f"{one['first_shard_seconds']:.0f}), "
        f"2 actors {two['seconds']:.0f} (first shard at {two['first_shard_seconds']:.0f})"
    )
    print("\n".join(lines))
