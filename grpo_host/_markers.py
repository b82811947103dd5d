"""The pluggy markers of the `grpo_host` project, kept apart so plugins import only pluggy."""

import pluggy

PROJECT_NAME = "grpo_host"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
