"""Rate limits: the limits file and what it becomes — Envoy's per-caller token buckets and
the config of Envoy's reference rate limit service (envoyproxy/ratelimit, Go, on Redis)
for the shared budgets. No Python service runs: see ``limits`` and ``service``."""
