"""Rate-limit service for the gateway (Envoy's envoy.service.ratelimit.v3 on Redis)."""
