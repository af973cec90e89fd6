"""cluster.yaml must pass Ray's own autoscaler validation, and keep the security defaults."""

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_validates_with_rays_schema():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    validate_config(prepare_config(config))


def test_cluster_yaml_keeps_work_off_the_head_and_the_dashboard_on_loopback():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    workers = [
        t for name, t in config["available_node_types"].items() if name != config["head_node_type"]
    ]
    assert all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in workers)
    assert len({t["node_config"]["InstanceType"] for t in workers}) >= 3
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "RAY_AUTH_MODE=token" in start


def test_cluster_yaml_admits_ssh_only_through_one_user_made_security_group():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    # A security group Ray creates itself always admits SSH from 0.0.0.0/0: every node must join
    # the one group the user made (SSH from their CIDR, all traffic inside the group), none left
    # out.
    assert "security_group" not in config["provider"]
    groups = {
        tuple(t["node_config"]["SecurityGroupIds"]) for t in config["available_node_types"].values()
    }
    assert len(groups) == 1 and len(next(iter(groups))) == 1
    text = CLUSTER_YAML.read_text()
    assert "--port 22 --cidr YOUR_CIDR" in text and "0.0.0.0/0" not in text
    excluded = set(config["rsync_exclude"])
    assert {".env", "*.pem", "*.key", ".aws"} <= excluded
    runtime_env = yaml.safe_load(
        (CLUSTER_YAML.parent / "selfexplain/configs/runtime_env.yaml").read_text()
    )
    assert {".env", "*.pem", "*.key", ".aws/"} <= set(runtime_env["excludes"])
    secret_words = ("SECRET", "ACCESS_KEY", "AUTH_TOKEN", "PASSWORD", "CREDENTIALS")
    assert not any(word in name for word in secret_words for name in runtime_env["env_vars"])
