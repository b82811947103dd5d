"""Interop: grpo-host rewards served to other trainers, over HTTP or in their own process.

``server`` runs chosen rewards behind an HTTP server (``grpo-host serve-rewards``; the
protocol is in docs/serve-rewards.md, OpenRLHF's ``/get_reward`` shape included); ``export``
writes the small file verl or OpenRLHF loads (``grpo-host export``); ``scoring`` is what both
share: samples in, the same JSON results out, whether scored here or by a server.
"""
