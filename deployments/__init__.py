"""Ray Serve deployments: thin wrappers that build a backend from a stage config and delegate to it."""
