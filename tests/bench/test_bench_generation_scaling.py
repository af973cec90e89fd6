"""Ground-truth generation with one Ray Data actor against two, on the same patching pairs of
SmolLM2-135M (every layer, about 90 sites a pair: items large enough that the model's work, not
the actor start, dominates). Each actor has one CPU and one torch thread; on this 2-core machine
two actors are the whole machine. Prints rows/s of each and the ratio."""

from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.generate import generate
from selfexplain.jobs.ray_session import ray_session

PAIRS = 80


def test_two_generation_actors_against_one(tmp_path):
    rates = {}
    with ray_session(RayConfig(num_cpus=4)):
        for actors in (1, 2):
            config = load_config("tiny", [
                "target=smollm2-135m", "task=patching", f"output_dir={tmp_path}", f"name=actors{actors}",
                f"generate.max_items={PAIRS}", "generate.items_per_shard=4", f"generate.num_actors={actors}",
                "generate.cpus_per_actor=1", "generate.held_out_fraction=0.25"])
            generate(config)
            rates[actors] = (config.corpus_dir / "manifest.json").read_json()
    one, two = rates[1], rates[2]
    assert one["rows"] == two["rows"] > 0  # the same corpus either way
    print(f"\ngeneration, patching, SmolLM2-135M, {PAIRS} pairs, {one['rows']} rows (start-up included): "
          f"1 actor {one['rows_per_second']:.1f} rows/s ({one['seconds']:.0f} s), "
          f"2 actors {two['rows_per_second']:.1f} rows/s ({two['seconds']:.0f} s): "
          f"{two['rows_per_second'] / one['rows_per_second']:.2f}x")
