"""The graph without Ray: its typed config, ``auto`` resolution, hardware probe, A/B statistics,
stage building and the orchestrator that runs text -> translation -> speech."""
