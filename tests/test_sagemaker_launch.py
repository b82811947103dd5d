"""`grpo-host launch sagemaker` with the real SageMaker SDK against a local AWS emulator.

moto's server runs on 127.0.0.1 (a subprocess, recording every request it gets), the CLI
runs as a user runs it with fake credentials pointing at it, and nothing can leave the
machine: a dead proxy catches any request not meant for 127.0.0.1 (the SDK's telemetry is
also opted out). SAGEMAKER_VALIDATE_ROLE=false because moto lacks the IAM policy simulation
the SDK's role check calls.

The last test plays the container: it takes the job's uploaded source and the SDK's own
driver files from the emulated S3, lays out SageMaker's /opt/ml contract in a temp dir bound
over /opt/ml in a private mount namespace (root and `unshare` needed, else it skips), installs
the shipped wheels into a fresh virtual environment, and runs the job's own command on CPU.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

import pytest

from .conftest import free_port, write_distribution

pytest.importorskip("sagemaker.train", reason="the SageMaker SDK is not installed: pip install 'grpo-host[sagemaker]'")
pytest.importorskip("moto.server", reason="moto's server is not installed: pip install 'moto[server]'")
boto3 = pytest.importorskip("boto3")

REPO = Path(__file__).resolve().parents[1]
REGION = "us-west-2"
BUCKET = "grpo-test-bucket"
ROLE = "arn:aws:iam::123456789012:role/grpo-test"
FAKE_TOKEN = "hf_FAKE_sagemaker_test_token_7f3a9c"  # not a real secret: checked never to leak
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-pytorch-training:latest"

TINY_CONFIG = """\
model:
  id: builtin:tiny-qwen2
data:
  source: prompts.jsonl
rewards:
  - format
  - name: length
    params: {target: 20}
grpo:
  max_steps: 2
  per_device_train_batch_size: 4
  num_generations: 4
  max_completion_length: 8
  logging_steps: 1
checkpointing:
  steps: 1
reward_workers: 0
launch:
  sagemaker:
    region: us-west-2
    instance_type: ml.m5.xlarge
    tags: {team: rl}
"""


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's server on 127.0.0.1, recording requests; yields (endpoint, recording path)."""
    root = tmp_path_factory.mktemp("moto")
    recording = root / "requests.jsonl"
    port = free_port()
    env = {**os.environ, "MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(recording)}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield endpoint, recording
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def aws_env(endpoint: str, tmp: Path) -> dict[str, str]:
    """The environment of a user with fake credentials whose AWS is the emulator."""
    sdk_config = tmp / "sagemaker-config.yaml"
    sdk_config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "SM_", "GRPO_HOST_"))}
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "SAGEMAKER_VALIDATE_ROLE": "false", "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(sdk_config),
        # Anything not for 127.0.0.1 goes to a dead proxy and fails, instead of leaving the machine.
        "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
        "HF_TOKEN": FAKE_TOKEN, "HF_HUB_OFFLINE": "1",
    })
    return env


def grpo_host(*args: str, env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grpo_host", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def recorded(recording: Path) -> list[dict]:
    """The requests the emulator got: method, url, X-Amz-Target and the decoded body."""
    if not recording.exists():
        return []
    entries = []
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("latin-1")
        headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
        entries.append({"method": entry["method"], "url": entry["url"], "target": headers.get("x-amz-target", ""),
                        "body": body})
    return entries


def client(service: str, endpoint: str):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _require_accelerate():
    from grpo_host.plugins.manager import get_plugin_manager

    if "accelerate" not in get_plugin_manager().backends:
        pytest.skip("the accelerate backend plugin is not installed (pip install -e plugins/grpo-backend-accelerate)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    _require_accelerate()
    root = tmp_path_factory.mktemp("run")
    with open(root / "prompts.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n")
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    return root


@pytest.fixture(scope="module")
def job(moto, run_dir, tmp_path_factory):
    """One job submitted through the CLI; yields what the tests look at."""
    endpoint, recording = moto
    before = len(recorded(recording))
    env = aws_env(endpoint, tmp_path_factory.mktemp("aws"))
    start = time.perf_counter()
    proc = grpo_host(
        "launch", "sagemaker", "tiny.yaml", "--bucket", BUCKET, "--role", ROLE, "--image", IMAGE,
        "--secret-from-env", "HF_TOKEN", "--spot", "--max-run", "2h", "--keep-alive", "10m",
        "--checkpoint-s3-uri", f"s3://{BUCKET}/ckpt/tiny", "--hp", "grpo.learning_rate=0.002",
        "--env", "MY_FLAG=1", "--tag", "owner=tests", "--subnet", "subnet-123", "--security-group", "sg-456",
        "--json", env=env, cwd=run_dir)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_name = json.loads(proc.stdout)["job_name"]
    requests = recorded(recording)[before:]
    create = [r for r in requests if r["target"].endswith("CreateTrainingJob")]
    assert len(create) == 1
    describe = client("sagemaker", endpoint).describe_training_job(TrainingJobName=job_name)
    return {"name": job_name, "describe": describe, "request": json.loads(create[0]["body"]), "requests": requests,
            "output": proc.stdout + proc.stderr, "endpoint": endpoint, "env": env, "seconds": seconds}


def test_job_request_has_what_the_run_needs(job):
    d = job["describe"]
    assert d["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert d["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"  # from the config's launch.sagemaker
    assert d["ResourceConfig"]["InstanceCount"] == 1
    assert d["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    assert d["RoleArn"] == ROLE
    assert d["HyperParameters"] == {"grpo__learning_rate": "0.002"}  # dots would break SM_HP_* exports
    assert d["EnableManagedSpotTraining"] is True
    assert d["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert d["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/ckpt/tiny", "LocalPath": "/opt/ml/checkpoints"}
    assert d["VpcConfig"] == {"SecurityGroupIds": ["sg-456"], "Subnets": ["subnet-123"]}
    assert d["OutputDataConfig"]["S3OutputPath"].startswith(f"s3://{BUCKET}/")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in d["InputDataConfig"]}
    assert set(channels) == {"train", "code", "sm_drivers"}
    assert channels["train"].endswith("/input/train/prompts.jsonl")
    assert channels["code"].endswith("/input/code/grpo-host-source.tar.gz")
    # accelerate backend: the job runs `grpo-host train` (the SDK's driver script runs it)
    assert d["AlgorithmSpecification"]["ContainerArguments"][-1].endswith("sm_train.sh")

    request = job["request"]  # what moto does not echo back: environment and tags
    env = request["Environment"]
    assert env["MY_FLAG"] == "1"
    assert env["GRPO_HOST_SAGEMAKER"] == "1"
    assert json.loads(env["GRPO_HOST_CHANNELS"]) == {"train": {"field": "data.source", "file": "prompts.jsonl"}}
    assert json.loads(env["GRPO_HOST_SECRETS"]) == {"region": REGION, "env": {"HF_TOKEN": "grpo-host/HF_TOKEN"}}
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["team"] == "rl" and tags["owner"] == "tests" and tags["grpo-host:run"] == "tiny"


def _s3_objects(endpoint: str, uri: str) -> dict[str, bytes]:
    s3 = client("s3", endpoint)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    out = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        rel = obj["Key"][len(prefix):].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
        out[rel] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _channel_uri(job, name: str) -> str:
    return next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["describe"]["InputDataConfig"]
                if c["ChannelName"] == name)


def test_uploaded_source_holds_wheels_requirements_and_config(job):
    code = _s3_objects(job["endpoint"], _channel_uri(job, "code"))
    assert list(code) == ["grpo-host-source.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(code["grpo-host-source.tar.gz"])) as tar:
        names = set(tar.getnames())
        requirements = tar.extractfile("requirements.txt").read().decode()
        run_yaml = tar.extractfile("run.yaml").read().decode()
        manifest = json.loads(tar.extractfile("grpo-host-manifest.json").read())
    wheels = sorted(n.split("-")[0] for n in names if n.startswith("wheels/") and n.endswith(".whl"))
    assert wheels == ["wheels/grpo_backend_accelerate", "wheels/grpo_host", "wheels/grpo_reward_format",
                      "wheels/grpo_reward_length"]
    for wheel in (n for n in names if n.endswith(".whl")):
        assert f"./{wheel}" in requirements.splitlines()
    stack = {line.split("==")[0] for line in requirements.splitlines() if "==" in line}
    assert {"trl", "transformers", "accelerate"} <= stack and "torch" not in stack  # torch: the image's
    assert "launch" not in run_yaml and "rewards:" in run_yaml and "prompts.jsonl" in run_yaml
    assert {d["name"] for d in manifest["distributions"]} >= {"grpo-host", "grpo-reward-format"}
    host = next(d for d in manifest["distributions"] if d["name"] == "grpo-host")
    assert host["how"] == "built" and host["origin"] == str(REPO)
    assert "grpo_host_job.py" in names


def test_no_secret_in_the_job_description_hyperparameters_or_upload(job):
    # The token reaches AWS only in the Secrets Manager call that stores it.
    carrying = [r for r in job["requests"] if FAKE_TOKEN in r["body"]]
    assert [r["target"] for r in carrying] and all(r["target"].startswith("secretsmanager.") for r in carrying)
    assert FAKE_TOKEN not in json.dumps(job["describe"], default=str)
    assert FAKE_TOKEN not in json.dumps(job["request"])
    assert FAKE_TOKEN not in job["output"]
    stored = client("secretsmanager", job["endpoint"]).get_secret_value(SecretId="grpo-host/HF_TOKEN")
    assert stored["SecretString"] == FAKE_TOKEN
    for blob in _s3_objects(job["endpoint"], f"s3://{BUCKET}/").values():
        assert FAKE_TOKEN.encode() not in blob
        if blob[:2] == b"\x1f\x8b":  # the source tarball: look inside every member too
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        assert FAKE_TOKEN.encode() not in tar.extractfile(member).read(), member.name


def test_a_secret_in_the_job_environment_is_refused(moto, run_dir, tmp_path):
    endpoint, recording = moto
    before = len(recorded(recording))
    env = aws_env(endpoint, tmp_path)
    proc = grpo_host("launch", "sagemaker", "tiny.yaml", "--dry-run", "--image", IMAGE, "--env", "HF_TOKEN=" + FAKE_TOKEN,
                     env=env, cwd=run_dir)
    assert proc.returncode == 2
    assert "--secret-from-env HF_TOKEN" in proc.stderr and FAKE_TOKEN not in proc.stderr + proc.stdout
    proc = grpo_host("launch", "sagemaker", "tiny.yaml", "--dry-run", "--image", IMAGE, "--hp", "note=" + FAKE_TOKEN,
                     env=env, cwd=run_dir)
    assert proc.returncode == 2 and "hyperparameter note" in proc.stderr
    assert len(recorded(recording)) == before


def test_dry_run_prints_the_request_and_sends_nothing(moto, run_dir, tmp_path):
    endpoint, recording = moto
    jobs_before = client("sagemaker", endpoint).list_training_jobs()["TrainingJobSummaries"]
    before = len(recorded(recording))
    env = aws_env(endpoint, tmp_path)
    proc = grpo_host("launch", "sagemaker", "tiny.yaml", "--dry-run", "--json", "--secret-from-env", "HF_TOKEN",
                     "--instance-count", "2", "--source-dir", str(tmp_path / "src"), env=env, cwd=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preview = json.loads(proc.stdout)
    request = preview["CreateTrainingJob"]
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith("763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:")
    assert "-cpu-" in request["AlgorithmSpecification"]["TrainingImage"]  # ml.m5.xlarge has no GPU
    assert preview["SourceCode"]["Command"] == "python3 -m grpo_host train run.yaml"
    assert preview["SecretsManager"]["store_from_your_env"] == {"HF_TOKEN": "grpo-host/HF_TOKEN"}
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    assert (tmp_path / "src" / "source" / "requirements.txt").is_file()  # built, kept, not sent
    assert len(recorded(recording)) == before, "a dry run must not call AWS"
    assert client("sagemaker", endpoint).list_training_jobs()["TrainingJobSummaries"] == jobs_before


def test_wait_streams_status_and_log(job, monkeypatch, capsys):
    endpoint = job["endpoint"]
    logs = client("logs", endpoint)
    group = "/aws/sagemaker/TrainingJobs"
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    stream = f"{job['name']}/algo-1-1700000000"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": int(time.time() * 1000), "message": "step 1/2  reward 0.5"},
        {"timestamp": int(time.time() * 1000) + 1, "message": "step 2/2  reward 0.6"}])
    for key, value in job["env"].items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    from grpo_host.sagemaker.launcher import describe_summary, stream_job

    lines: list[str] = []
    desc = stream_job(job["name"], REGION, echo=lines.append, poll=0.1)
    assert desc["TrainingJobStatus"] == "Completed"
    assert any(job["name"] in line and "Completed" in line for line in lines)
    assert lines[-2:] == ["step 1/2  reward 0.5", "step 2/2  reward 0.6"]
    assert "model.tar.gz" in describe_summary(desc)
    proc = grpo_host("launch", "sagemaker-logs", job["name"], "--region", REGION, "--poll", "0.1", env=job["env"],
                     cwd=Path.cwd())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step 2/2  reward 0.6" in proc.stdout and "model.tar.gz" in proc.stdout


FAKE_TORCHRUN_BACKEND = """
import grpo_host
from grpo_host.backends import BackendSpec


def _command(worker_argv, params, env):
    return ["torchrun", "--nproc_per_node", "1", *worker_argv[1:]]


@grpo_host.hookimpl
def grpo_backends():
    return [BackendSpec(name="torchrun-test", description="a stand-in torchrun backend", build_command=_command)]
"""


def test_torchrun_backend_runs_under_the_sdk_torchrun_driver(moto, run_dir, tmp_path, plugin_dir):
    write_distribution(plugin_dir, "grpo-backend-torchrun-test", {"torchrun_test_backend": FAKE_TORCHRUN_BACKEND},
                       {"torchrun-test": "torchrun_test_backend"})
    endpoint, _ = moto
    env = aws_env(endpoint, tmp_path)
    proc = grpo_host("launch", "sagemaker", "tiny.yaml", "--backend", "torchrun-test", "--set", "rewards=[format]",
                     "--bucket", BUCKET, "--role", ROLE, "--image", IMAGE, "--instance-count", "2",
                     "--processes-per-node", "4", "--json", env=env, cwd=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_name = json.loads(proc.stdout)["job_name"]
    d = client("sagemaker", endpoint).describe_training_job(TrainingJobName=job_name)
    assert d["ResourceConfig"]["InstanceCount"] == 2
    uri = next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in d["InputDataConfig"] if c["ChannelName"] == "sm_drivers")
    drivers = _s3_objects(endpoint, uri)
    assert json.loads(drivers["distributed.json"])["process_count_per_node"] == 4
    source = json.loads(drivers["sourcecode.json"])
    assert source["entry_script"] == "grpo_host_job.py" and source["command"] is None
    assert "torchrun_driver.py" in drivers["sm_train.sh"].decode()
    code = _s3_objects(endpoint, next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in d["InputDataConfig"]
                                      if c["ChannelName"] == "code"))
    with tarfile.open(fileobj=io.BytesIO(code["grpo-host-source.tar.gz"])) as tar:
        entry = tar.extractfile("grpo_host_job.py").read().decode()
        requirements = tar.extractfile("requirements.txt").read().decode()
    assert "torchrun_main" in entry
    assert "grpo-backend-torchrun-test==0.1.0" in requirements  # not from a local folder: pinned, not built


def test_notebook_is_valid_and_uses_the_launcher(tmp_path):
    import ast

    from grpo_host.config import validate_config
    from grpo_host.sagemaker import launcher
    from grpo_host.sagemaker.options import resolve_options

    notebook = json.loads((REPO / "examples" / "sagemaker.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["cells"]
    used = set()
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
        if cell["cell_type"] != "code":
            continue
        source = "".join(line for line in cell["source"] if not line.lstrip().startswith(("%", "!")))
        tree = ast.parse(source)  # every code cell is valid Python
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "grpo_host.sagemaker.launcher":
                used.update(alias.name for alias in node.names)
    assert {"plan_job", "preview_request", "submit", "stream_job"} <= used
    assert all(hasattr(launcher, name) for name in used)
    config_cell = next("".join(c["source"]) for c in notebook["cells"] if "config = " in "".join(c["source"]))
    import yaml

    raw = yaml.safe_load(config_cell.split('config = """', 1)[1].split('"""', 1)[0])
    resolve_options(raw["launch"]["sagemaker"], {})
    validate_config(raw, "the notebook's config")


# -- playing the container -----------------------------------------------------------------------
NAMESPACE_SCRIPT = r"""
set -e
root="$1"; shift
# Private mount namespace: none of this is visible outside. /opt/ml does not exist on this
# machine, so /opt gets a tmpfs with its entries bound back and our /opt/ml beside them.
if [ -d /opt/ml ]; then
  mount --bind "$root/opt_ml" /opt/ml
else
  mkdir -p "$root/orig_opt"
  if [ -d /opt ]; then mount --bind /opt "$root/orig_opt"; fi
  mount -t tmpfs tmpfs /opt
  for entry in "$root"/orig_opt/* "$root"/orig_opt/.[!.]*; do
    [ -e "$entry" ] || continue
    name=$(basename "$entry")
    if [ -d "$entry" ]; then mkdir "/opt/$name"; else touch "/opt/$name"; fi
    mount --bind "$entry" "/opt/$name"
  done
  mkdir /opt/ml
  mount --bind "$root/opt_ml" /opt/ml
fi
cd /
exec "$@"
"""


def _namespace_problem() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "needs root to bind a temp dir over /opt/ml in a private mount namespace (unshare -m)"
    if not shutil.which("unshare"):
        return "needs util-linux's unshare"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a private mount namespace here: {probe.stderr.strip()}"
    return None


def _fresh_venv(root: Path) -> Path:
    """A new virtual environment with none of grpo-host's distributions. The training stack
    (torch, trl, ...) comes from this environment's site-packages through a path entry placed
    after the venv's own, so pip finds the pinned versions installed, and what the job's
    requirements install lands in the venv and wins."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shadow = root / "stack"
    shadow.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        name = entry.name.lower()
        if name.startswith(("grpo", "__editable__")) or name.endswith(".pth"):
            continue  # the host and plugins must come from the shipped wheels only
        (shadow / entry.name).symlink_to(entry)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "zz-training-stack.pth").write_text(str(shadow) + "\n")
    pip3 = venv / "bin" / "pip3"  # the SDK's script checks that pip exists; pip itself comes from the stack
    pip3.write_text('#!/bin/sh\nexec "$(dirname "$0")/python3" -m pip "$@"\n')
    pip3.chmod(0o755)
    return venv


def test_the_job_runs_in_a_played_container(job, tmp_path):
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    endpoint, d = job["endpoint"], job["describe"]
    opt_ml = tmp_path / "opt_ml"
    channels = {}
    for channel in d["InputDataConfig"]:
        name = channel["ChannelName"]
        folder = opt_ml / "input" / "data" / name
        for rel, blob in _s3_objects(endpoint, channel["DataSource"]["S3DataSource"]["S3Uri"]).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(blob)
        channels[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                          "RecordWrapperType": "None"}
    config_dir = opt_ml / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(d["HyperParameters"]))
    (config_dir / "inputdataconfig.json").write_text(json.dumps(channels))
    (config_dir / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "current_instance_type": d["ResourceConfig"]["InstanceType"],
        "current_group_name": "homogeneousCluster", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    for sub in ("model", "output/data", "checkpoints"):
        (opt_ml / sub).mkdir(parents=True, exist_ok=True)
    venv = _fresh_venv(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **job["request"]["Environment"],  # exactly what the job gets
        "TRAINING_JOB_NAME": job["name"], "AWS_REGION": REGION,
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
        # The job's role, played by the emulator: the secret is read by name from Secrets Manager.
        **{k: v for k, v in job["env"].items() if k.startswith(("AWS_", "HTTP", "NO_PROXY"))},
        "PIP_NO_INDEX": "1",  # every requirement must already be satisfied or shipped
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "GRPO_HOST_CACHE": str(tmp_path / "cache"),
    }
    env.pop("HF_TOKEN", None)
    script = tmp_path / "in-namespace.sh"
    script.write_text(NAMESPACE_SCRIPT)
    entry = d["AlgorithmSpecification"]["ContainerEntrypoint"] + d["AlgorithmSpecification"]["ContainerArguments"]
    start = time.perf_counter()
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", str(script), str(tmp_path), *entry],
                          env=env, capture_output=True, text=True, timeout=420)
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "Training Container Execution Completed" in log
    model_dir = opt_ml / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file(), \
        sorted(p.name for p in model_dir.iterdir())
    metrics = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 2
    assert (opt_ml / "output" / "data" / "report.html").is_file()  # the report also goes to output.tar.gz
    assert any(p.name.startswith("checkpoint-") for p in (opt_ml / "checkpoints").iterdir())
    run_config = (model_dir / "run_config.yaml").read_text()
    assert "/opt/ml/input/data/train/prompts.jsonl" in run_config and "learning_rate: 0.002" in run_config
    assert "dir: /opt/ml/checkpoints" in run_config and "resume: true" in run_config  # spot restarts resume
    assert FAKE_TOKEN not in log, "the Hub token must never reach the job's log"
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import grpo_host, grpo_reward_format; "
                                "print(grpo_host.__file__, grpo_reward_format.__file__)"],
                               capture_output=True, text=True, env={"PATH": env["PATH"]}, cwd=tmp_path)
    assert str(venv) in installed.stdout and str(REPO) not in installed.stdout, installed.stdout + installed.stderr
    print(f"played container: {seconds:.1f} s; launch: {job['seconds']:.1f} s")
