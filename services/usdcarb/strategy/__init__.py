"""Strategy service: strategies, content-addressed versions, lifecycle and deployments."""
