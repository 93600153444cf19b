#!/usr/bin/env python3
"""Checks the files in deploy/ against each other and against what deploy/README.md promises.

Run by .ci/run ("deploy files"); by hand: python3 .ci/check-deploy.py. It reads the files only:
systemd-analyze and a container builder, where the machine has them, are run by .ci/run.
Needs PyYAML.
"""

import json
import re
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
problems = []


def require(condition, message):
    if not condition:
        problems.append(message)


# --- deploy/Dockerfile ------------------------------------------------------------------------
dockerfile = (DEPLOY / "Dockerfile").read_text()
# Continuation lines joined, comments dropped: one instruction per line.
instructions = []
for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))


def instruction(keyword):
    return [rest for name, rest in instructions if name == keyword]


stages = instruction("FROM")
require(len(stages) >= 2, "Dockerfile: a builder stage and a runtime stage")
require(stages and stages[0].startswith("rust:"), "Dockerfile: the first stage builds with the rust image")
require(any("-slim" in stage for stage in stages[1:]), "Dockerfile: the runtime stage is a slim Debian image")
require(
    any("cargo build" in run and "--release" in run and "--locked" in run for run in instruction("RUN")),
    "Dockerfile: cargo build --release --locked",
)
users = instruction("USER")
require(users and users[-1].split(":")[0] not in ("0", "root"), "Dockerfile: the runtime runs as a user other than root")
entrypoint = instruction("ENTRYPOINT")
require(entrypoint and json.loads(entrypoint[-1]) == ["unseen", "serve"], 'Dockerfile: ENTRYPOINT ["unseen", "serve"]')
command = json.loads(instruction("CMD")[-1]) if instruction("CMD") else []
volumes = [path for rest in instruction("VOLUME") for path in json.loads(rest)]
require(volumes and command and command[0] == volumes[0], "Dockerfile: CMD serves the domain directory in the VOLUME")
listen = command[command.index("--listen") + 1] if "--listen" in command else ""
port = listen.rpartition(":")[2]
require(port and instruction("EXPOSE") == [port], f"Dockerfile: EXPOSE {port}, the port CMD listens on")
healthchecks = instruction("HEALTHCHECK")
require(healthchecks and f"/{port}" in healthchecks[-1], f"Dockerfile: a HEALTHCHECK of port {port}")
require(instruction("STOPSIGNAL") == ["SIGTERM"], "Dockerfile: STOPSIGNAL SIGTERM")
ignored = (ROOT / ".dockerignore").read_text().split()
for path in ("target/", ".git/", "deploy/secrets/"):
    require(path in ignored, f".dockerignore: {path} stays out of the build context")

# --- deploy/compose.yaml ----------------------------------------------------------------------
compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
services = compose.get("services", {})
require(set(services) == {"gateway", "postgres"}, f"compose: services gateway and postgres, got {sorted(services)}")
declared_secrets = compose.get("secrets", {})
declared_volumes = compose.get("volumes", {})
for name, secret in declared_secrets.items():
    require(
        str(secret.get("file", "")).startswith("./secrets/"),
        f"compose: secret {name} is a file under deploy/secrets/ (kept out of git and images)",
    )
for name, service in services.items():
    environment = service.get("environment", {})
    require(isinstance(environment, dict), f"compose: {name}'s environment as a mapping")
    for key, value in environment.items():
        require("PASSWORD" not in key or key.endswith("_FILE"), f"compose: {name} gets {key} from a file, not in clear")
    for secret in service.get("secrets", []):
        require(secret in declared_secrets, f"compose: {name} uses secret {secret}, which is not declared")
    for mount in service.get("volumes", []):
        source = mount.split(":")[0]
        require(source in declared_volumes, f"compose: {name} mounts {source}, not a declared named volume")
    for key, value in environment.items():
        if key.endswith("FILE") and str(value).startswith("/run/secrets/"):
            secret = str(value).removeprefix("/run/secrets/")
            require(secret in service.get("secrets", []), f"compose: {name}'s {key} names secret {secret} it lacks")

postgres = services.get("postgres", {})
require(str(postgres.get("image", "")).startswith("postgres:15"), "compose: PostgreSQL 15")
require("POSTGRES_PASSWORD_FILE" in postgres.get("environment", {}), "compose: postgres reads its password file")
require("healthcheck" in postgres, "compose: postgres has a health check the gateway waits for")

gateway = services.get("gateway", {})
build = gateway.get("build", {})
require(
    (DEPLOY / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve() == DEPLOY / "Dockerfile",
    "compose: the gateway is built from deploy/Dockerfile with the repository as context",
)
require(
    gateway.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
    "compose: the gateway starts once PostgreSQL is healthy",
)
require("PGPASSFILE" in gateway.get("environment", {}), "compose: the gateway's database password is a PGPASSFILE")
targets = [mount.split(":")[1] for mount in gateway.get("volumes", [])]
require(volumes and volumes[0] in targets, f"compose: the gateway's volume is mounted at the image's {volumes}")
require(
    any(str(mapping).endswith(f":{port}") for mapping in gateway.get("ports", [])),
    f"compose: the gateway publishes port {port}",
)
require(gateway.get("stop_signal") == "SIGTERM", "compose: the gateway stops on SIGTERM")
require(gateway.get("read_only") is True, "compose: the gateway's root filesystem is read-only")
require(gateway.get("cap_drop") == ["ALL"], "compose: the gateway drops every capability")

# --- deploy/unseen.service --------------------------------------------------------------------
unit = {}
section = None
for line in (DEPLOY / "unseen.service").read_text().splitlines():
    line = line.strip()
    if not line or line.startswith(("#", ";")):
        continue
    if line.startswith("["):
        section = line.strip("[]")
        continue
    key, separator, value = line.partition("=")
    require(separator == "=", f"unseen.service: {line!r} is not KEY=VALUE")
    unit.setdefault((section, key), []).append(value)


def service(key):
    return unit.get(("Service", key), [])


expected = {
    "User": "unseen",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
}
for key, value in expected.items():
    require(service(key) == [value], f"unseen.service: {key}={value}, got {service(key)}")
for key in ("RestrictAddressFamilies", "LimitNOFILE", "TimeoutStopSec"):
    require(service(key), f"unseen.service: {key} is set")
require("@system-service" in service("SystemCallFilter"), "unseen.service: SystemCallFilter=@system-service")
for key, why in (
    ("MemoryDenyWriteExecute", "wasmtime maps the code it compiles executable"),
    ("LimitAS", "the pooling allocator reserves address space up front"),
):
    require(not service(key), f"unseen.service: {key} must not be set ({why})")
exec_start = shlex.split(service("ExecStart")[0]) if service("ExecStart") else []
require(exec_start[1:2] == ["serve"], "unseen.service: ExecStart runs `unseen serve`")
domain_dir = exec_start[2] if len(exec_start) > 2 else None
require(domain_dir in service("ReadWritePaths"), f"unseen.service: ReadWritePaths={domain_dir}, the domain directory")
require(unit.get(("Install", "WantedBy")) == ["multi-user.target"], "unseen.service: WantedBy=multi-user.target")

if problems:
    print("deploy files:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("deploy files: Dockerfile, compose.yaml and unseen.service agree with each other and the README")
