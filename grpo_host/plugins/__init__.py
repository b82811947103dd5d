"""The plugin system: finding installed plugins, loading each one guarded, and the registries
of what they provide (rewards, backends, data sources, trackers).

The hook specifications a plugin implements are ``grpo_host.hookspecs``; the records it
returns are the public modules beside it (``grpo_host.backends``, ``grpo_host.datasets``,
``grpo_host.tracking``).
"""
