"""Monitoring of the mesh: Prometheus, Alertmanager, rules and Grafana dashboards."""
