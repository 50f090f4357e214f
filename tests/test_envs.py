"""Conda envs must pin exactly what requirements.lock (the tested environment) pins."""

import re

import yaml
from conftest import REPO


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins():
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[normalise(name)] = version.strip()
    return pins


def env_pins(path):
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {normalise(n): v for n, v in (p.split("==") for p in pip if "==" in p)}, env


def test_every_env_pin_equals_the_lock():
    lock = lock_pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for path in envs:
        pins, env = env_pins(path)
        assert pins, f"{path.name} pins nothing"
        for name, version in pins.items():
            assert lock.get(name) == version, f"{path.name}: {name}=={version}, requirements.lock has {lock.get(name)}"
        assert "python=3.11" in env["dependencies"], path.name


def test_every_rule_names_an_existing_env():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().exists(), f"{smk.name}: {env} does not exist"
