"""The launch options of a SageMaker job: the run config's ``launch.sagemaker`` section, then
the command line's options on top.

Kept apart from the run config (``grpo_host.config``) on purpose: ``grpo-host train`` never
reads them, and the job gets a run config without them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grpo_host.errors import GrpoHostError, did_you_mean

DEFAULT_INSTANCE_TYPE = "ml.g5.2xlarge"
DAY = 24 * 3600
RESERVED_CHANNELS = ("code", "sm_drivers", "train", "eval", "model", "tokenizer")


class LaunchOptionsError(GrpoHostError, ValueError):
    """A launch option is invalid; the message names it and what it takes."""


def parse_duration(value: Any) -> int:
    """Seconds from ``3600``, ``"90m"``, ``"24h"``, ``"2d"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is seconds or a text like 90m, 24h, 2d")
    if isinstance(value, (int, float)):
        seconds = int(value)
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            parts = re.findall(r"(\d+)\s*([smhd])", text)
            if not parts or re.sub(r"(\d+)\s*([smhd])", "", text).strip():
                raise ValueError(f"{value!r} is not a duration; give seconds or a text like 90m, 24h, 2d, 1h30m")
            unit = {"s": 1, "m": 60, "h": 3600, "d": DAY}
            seconds = sum(int(n) * unit[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


class SageMakerOptions(BaseModel):
    """How to run the job. Every field can be set in ``launch.sagemaker`` or on the command line."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    region: str | None = Field(None, description="AWS region; default: the AWS profile's region.")
    role: str | None = Field(None, description="IAM role ARN the job runs as; default: the SDK's "
                             "resolution (the SageMaker Studio/notebook execution role).")
    image: str | None = Field(None, description="Training image URI; default: the newest AWS PyTorch "
                              "training image the SDK knows, for the region and instance type.")
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = Field(1, ge=1)
    volume_size_gb: int = Field(100, ge=1, description="The instance's storage volume.")
    processes_per_node: int | None = Field(None, ge=1, description="Training processes per instance; "
                                           "default: one per GPU (one on a CPU instance).")
    train: str | None = Field(None, description="The train channel: an S3 URI or a local file/folder to "
                              "upload; default: data.source when it is a local path.")
    eval: str | None = Field(None, description="An eval channel (S3 URI or local path), for a run config "
                             "that takes a separate eval data file.")
    channels: dict[str, str] = Field(default_factory=dict, description="More input channels: name -> S3 "
                                     "URI or local path (in the job: $SM_CHANNEL_<NAME>).")
    checkpoint_s3_uri: str | None = Field(None, description="Where the job syncs /opt/ml/checkpoints; "
                                          "default with spot: under the job's S3 prefix.")
    output_path: str | None = Field(None, description="S3 URI for model.tar.gz and output.tar.gz; "
                                    "default: s3://<bucket>/<job name prefix>.")
    bucket: str | None = Field(None, description="S3 bucket for the uploaded source and data; default: "
                               "the SDK's sagemaker-<region>-<account>.")
    job_name: str | None = Field(None, description="Base job name (a timestamp is appended); default: "
                                 "grpo-<run name>.")
    max_run: int = Field(DAY, description="Max run time: seconds or 90m, 24h, 2d.")
    spot: bool = Field(False, description="Managed spot training (resumes from checkpoints after an interruption).")
    max_wait: int | None = Field(None, description="With spot: max time including waiting for capacity; "
                                 "default 2 x max_run.")
    keep_alive: int | None = Field(None, description="Keep the instances warm this long after the job "
                                   "(warm pool), for the next job.")
    environment: dict[str, str] = Field(default_factory=dict, description="Job environment variables "
                                        "(no secrets: use secrets / secrets_from_env).")
    tags: dict[str, str] = Field(default_factory=dict)
    subnets: list[str] = Field(default_factory=list, description="VPC subnets (with security_group_ids).")
    security_group_ids: list[str] = Field(default_factory=list)
    network_isolation: bool = Field(False, description="No network from the container: the image must "
                                    "already hold every requirement (pip cannot reach an index).")
    secrets: dict[str, str] = Field(default_factory=dict, description="Job variable -> AWS Secrets Manager "
                                    "secret name or ARN, read inside the job (e.g. HF_TOKEN: my/hf-token).")
    secrets_from_env: list[str] = Field(default_factory=list, description="Your environment variables "
                                        "(e.g. HF_TOKEN) to store in Secrets Manager and pass by name.")
    secret_prefix: str = Field("grpo-host/", description="Name prefix of the secrets stored for secrets_from_env.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Run-config overrides "
                                            "(dotted keys) applied in the job, shown in the SageMaker console as "
                                            "hyperparameters (grpo.learning_rate -> grpo__learning_rate).")
    requirements: list[str] = Field(default_factory=list, description="More pip requirements for the job.")
    pin_versions: bool = Field(True, description="Pin trl, transformers, ... to the versions installed here.")

    @field_validator("max_run", "max_wait", "keep_alive", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("channels", "environment", "tags", "secrets")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        return {str(k): str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> SageMakerOptions:
        if self.max_wait is not None and not self.spot:
            raise ValueError("max_wait applies to spot training only: add spot: true (--spot)")
        if self.spot and self.max_wait is not None and self.max_wait < self.max_run:
            raise ValueError(f"max_wait ({self.max_wait} s) must be at least max_run ({self.max_run} s)")
        if bool(self.subnets) != bool(self.security_group_ids):
            raise ValueError("a VPC needs both subnets and security_group_ids")
        for name in self.channels:
            if name in RESERVED_CHANNELS or not re.fullmatch(r"[A-Za-z0-9\.\-_]+", name):
                raise ValueError(f"channel name {name!r} is reserved or invalid ({', '.join(RESERVED_CHANNELS)} "
                                 "are taken; use letters, digits, '.', '-', '_')")
        return self

    @property
    def wait_time(self) -> int | None:
        return (self.max_wait or 2 * self.max_run) if self.spot else None


def resolve_options(section: Any, cli: Mapping[str, Any], source: str = "the run config") -> SageMakerOptions:
    """``launch.sagemaker`` from the run config, then the command line's values (those given)."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise LaunchOptionsError(f"launch.sagemaker in {source} must be a mapping of options, not "
                                 f"{type(section).__name__}")
    merged: dict[str, Any] = dict(section)
    for key, value in cli.items():
        if value is None or value == () or value == {} or value == []:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        elif isinstance(value, (list, tuple)) and isinstance(merged.get(key), list):
            merged[key] = [*merged[key], *value]
        else:
            merged[key] = list(value) if isinstance(value, tuple) else value
    try:
        return SageMakerOptions.model_validate(merged)
    except ValidationError as exc:
        raise LaunchOptionsError(_format(exc, source)) from None


def _format(exc: ValidationError, source: str) -> str:
    lines = []
    fields = list(SageMakerOptions.model_fields)
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            name = str(err["loc"][-1])
            lines.append(f"launch.sagemaker.{name}: unknown option{did_you_mean(name, fields)}; "
                         f"options: {', '.join(fields)}")
        elif loc:
            lines.append(f"launch.sagemaker.{loc}: {err.get('input')!r} is not valid ({msg})")
        else:
            lines.append(f"launch.sagemaker: {msg}")
    head = "launch option error" + ("s" if len(lines) > 1 else "") + f" ({source} and the command line): "
    return head + "; ".join(lines)
