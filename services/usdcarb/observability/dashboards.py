"""The Grafana dashboards, as code (grafana-foundation-sdk builders).

``dashboards()`` returns every dashboard; ``scripts/gen_dashboards.py`` writes them as
JSON to ``deploy/monitoring/grafana/dashboards`` (committed, checked fresh by
``make test``), where Grafana's file provisioning (Compose, Kubernetes) loads them.
Every query reads a metric this repository exports (the services, Envoy's admin
``/stats/prometheus``, the recording rules); tests run each one against a live
Prometheus after a workload and expect data.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
SERVICES = "strategy|ingestion|validation|backtest|notification|identity"
# Envoy: the gateway listener's connection manager and the service clusters.
GATEWAY_HCM = 'envoy_http_conn_manager_prefix="ingress"'
CLUSTERS = f'envoy_cluster_name=~"{SERVICES}"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _target(q: Query, ref: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(q.expr).ref_id(ref).datasource(DATASOURCE)
    return target.legend_format(q.legend) if q.legend else target


def series(title: str, *queries: Query, unit: str = "short", description: str = "",
           width: int = 12) -> Builder[model.Panel]:
    """A time series panel of ``queries``."""
    panel = (timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE)
             .height(8).span(width).line_width(1).fill_opacity(10))
    if description:
        panel = panel.description(description)
    for i, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + i)))
    return panel


def single(title: str, query: Query, unit: str = "short", description: str = "",
           width: int = 6) -> Builder[model.Panel]:
    """A stat panel of one query (its last value)."""
    panel = (stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(4).span(width)
             .with_target(_target(query, "A")))
    return panel.description(description) if description else panel


def _dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description)
            .tags(["usdcarb", "generated"]).refresh("30s").time("now-1h", "now")
            .timezone("utc").editable()
            .with_variable(db.DatasourceVariable("datasource").label("Prometheus")
                           .type("prometheus")))


def overview() -> db.Dashboard:
    return (
        _dashboard("usdcarb-overview", "usdcarb / Overview",
                   "Traffic, errors and latency per service through Envoy; the services' own "
                   "view; dependencies and the latency SLO.")
        .with_row(db.Row("Through the gateway"))
        .with_panel(series("Requests/s by service", Query(
            f"sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_total{{{CLUSTERS}}}"
            f"[{RATE}]))", "{{envoy_cluster_name}}"), unit="reqps"))
        .with_panel(series("Responses/s by class", Query(
            f"sum by (envoy_response_code_class) (rate(envoy_cluster_upstream_rq_xx{{{CLUSTERS}}}"
            f"[{RATE}]))", "{{envoy_response_code_class}}xx"), unit="reqps"))
        .with_panel(series("Upstream latency p99 by service", Query(
            "histogram_quantile(0.99, sum by (le, envoy_cluster_name) (rate("
            f"envoy_cluster_upstream_rq_time_bucket{{{CLUSTERS}}}[{RATE}])))",
            "{{envoy_cluster_name}}"), unit="ms"))
        .with_panel(series("Server-side error ratio by service", Query(
            "(sum by (job) (rate(grpc_server_handled_total{grpc_code=~"
            f'"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"}}[{RATE}])) '
            f"or sum by (job) (rate(grpc_server_handled_total[{RATE}])) * 0) "
            f"/ sum by (job) (rate(grpc_server_handled_total[{RATE}]))", "{{job}}"),
            unit="percentunit"))
        .with_row(db.Row("Services"))
        .with_panel(series("Unary RPC latency p99", Query(
            "histogram_quantile(0.99, sum by (le, job) (rate("
            f"grpc_server_handling_seconds_bucket[{RATE}])))", "{{job}}"), unit="s"))
        .with_panel(series("Slow unary RPCs (SLO 99% < 250 ms), 1h window", Query(
            "job:grpc_server_slow:ratio_rate1h", "{{job}}"), unit="percentunit",
            description="Burn alerts: LatencySLOBurnFast / LatencySLOBurnSlow."))
        .with_panel(series("Targets up", Query("up", "{{job}}"), width=8))
        .with_panel(series("Dependencies healthy", Query(
            "min by (job, dependency) (usdcarb_dependency_up)", "{{job}} → {{dependency}}"),
            width=8))
        .with_panel(series("RPCs in flight", Query(
            "sum by (job) (grpc_server_in_flight)", "{{job}}"), width=8))
        .with_row(db.Row("Stores"))
        .with_panel(series("PostgreSQL pool connections in use", Query(
            'sum by (job) (usdcarb_db_pool_connections{state="in_use"})', "{{job}}"),
            Query("sum by (job) (usdcarb_db_pool_waiting)", "{{job}} waiting"), width=8))
        .with_panel(series("Redis command latency p99", Query(
            "histogram_quantile(0.99, sum by (le, job) (rate("
            f'usdcarb_redis_command_seconds_bucket{{command!="blocking"}}[{RATE}])))', "{{job}}"),
            unit="s", width=8))
        .with_panel(series("Redis commands/s", Query(
            f'sum by (job) (rate(usdcarb_redis_command_seconds_count{{command!="blocking"}}[{RATE}]))',
            "{{job}}"),
            unit="ops", width=8))
    )


def backtests() -> db.Dashboard:
    return (
        _dashboard("usdcarb-backtests", "usdcarb / Backtests",
                   "The job lanes, where a run spends its time, throughput and workers.")
        .with_row(db.Row("Queue"))
        .with_panel(series("Lane depth (queued or running)", Query(
            "max by (lane) (usdcarb_backtest_queue_depth)", "{{lane}}"), width=8))
        .with_panel(series("Oldest entry age", Query(
            "max by (lane) (usdcarb_backtest_queue_oldest_age_seconds)", "{{lane}}"), unit="s",
            width=8, description="BacktestQueueBackingUp fires above 5 minutes."))
        .with_panel(series("Jobs by state", Query(
            "max by (kind, state) (usdcarb_backtest_jobs)", "{{kind}} {{state}}"), width=8))
        .with_row(db.Row("Runs"))
        .with_panel(series("Stage duration p95", Query(
            "histogram_quantile(0.95, sum by (le, stage) (rate("
            f"usdcarb_backtest_stage_seconds_bucket[{RATE}])))", "{{stage}}"), unit="s"))
        .with_panel(series("Runs finished/s", Query(
            f'sum(rate(usdcarb_backtest_stage_seconds_count{{stage="engine"}}[{RATE}]))',
            "runs"), unit="ops"))
        .with_panel(series("Worker slots", Query(
            "sum by (state) (usdcarb_backtest_worker_slots)", "{{state}}"), width=8))
        .with_panel(single("Replicas ready", Query("sum(usdcarb_backtest_workers_ready)"),
                           width=4))
        .with_panel(series("BacktestService calls/s by method", Query(
            f'sum by (grpc_method) (rate(grpc_server_handled_total{{job="backtest"}}[{RATE}]))',
            "{{grpc_method}}"), unit="reqps", width=12))
    )


def market_data() -> db.Dashboard:
    return (
        _dashboard("usdcarb-market-data", "usdcarb / Market data",
                   "Ingestion per venue (lag, bars/s, quarantines, gaps, fetches) and "
                   "validation findings.")
        .with_row(db.Row("Ingestion"))
        .with_panel(series("Followed series lag (worst per venue)", Query(
            "max by (exchange) (usdcarb_ingestion_series_lag_seconds)", "{{exchange}}"),
            unit="s", description="Series with an incremental job; IngestionLagHigh > 15 min."))
        .with_panel(series("Bars stored/s", Query(
            f"sum by (exchange) (rate(usdcarb_ingestion_bars_stored_total[{RATE}]))",
            "{{exchange}}")))
        .with_panel(series("Bars quarantined/s", Query(
            f"sum by (exchange) (rate(usdcarb_ingestion_bars_quarantined_total[{RATE}]))",
            "{{exchange}}"), width=8))
        .with_panel(series("Gaps found/s", Query(
            f"sum by (exchange) (rate(usdcarb_ingestion_gaps_found_total[{RATE}]))",
            "{{exchange}}"), width=8))
        .with_panel(series("Page fetch p95", Query(
            "histogram_quantile(0.95, sum by (le, exchange) (rate("
            f"usdcarb_ingestion_page_fetch_seconds_bucket[{RATE}])))", "{{exchange}}"),
            Query(f"sum by (exchange) (rate(usdcarb_ingestion_page_retries_total[{RATE}]))",
                  "{{exchange}} retries/s"), unit="s", width=8))
        .with_panel(series("Candle reads by target", Query(
            f"sum by (target) (rate(usdcarb_pg_replica_reads_total[{RATE}]))", "{{target}}"),
            unit="ops", description="Replica while healthy and within its lag bound, else "
            "primary (PostgresReplicaLagHigh)."))
        .with_row(db.Row("Validation"))
        .with_panel(series("Findings/s by severity", Query(
            f"sum by (severity) (rate(usdcarb_validation_findings_total[{RATE}]))",
            "{{severity}}")))
        .with_panel(series("Findings by rule (last hour)", Query(
            "topk(10, sum by (rule) (increase(usdcarb_validation_findings_total[1h])))",
            "{{rule}}")))
    )


def gateway() -> db.Dashboard:
    return (
        _dashboard("usdcarb-gateway", "usdcarb / Gateway",
                   "The Envoy edge: responses by class, JWT refusals, rate-limit decisions, "
                   "latency; identity's logins and refusals.")
        .with_row(db.Row("Edge"))
        .with_panel(series("Downstream responses/s by class", Query(
            f"sum by (envoy_response_code_class) (rate(envoy_http_downstream_rq_xx{{{GATEWAY_HCM}}}"
            f"[{RATE}]))", "{{envoy_response_code_class}}xx"), unit="reqps"))
        .with_panel(series("Downstream latency p99", Query(
            "histogram_quantile(0.99, sum by (le) (rate(envoy_http_downstream_rq_time_bucket"
            f"{{{GATEWAY_HCM}}}[{RATE}])))", "p99"), unit="ms"))
        .with_panel(series("JWT checks/s", Query(
            f"sum(rate(envoy_http_jwt_authn_allowed{{{GATEWAY_HCM}}}[{RATE}]))", "allowed"),
            Query(f"sum(rate(envoy_http_jwt_authn_denied{{{GATEWAY_HCM}}}[{RATE}]))", "denied"),
            unit="reqps", width=8))
        .with_panel(series("Shared rate limits (rate-limit service)", Query(
            f"sum(rate(envoy_cluster_ratelimit_ok[{RATE}]))", "ok"),
            Query(f"sum(rate(envoy_cluster_ratelimit_over_limit[{RATE}])) or vector(0)",
                  "over limit"), unit="reqps", width=8))
        .with_panel(series("Per-caller budgets (Envoy local rate limit)", Query(
            f"sum(rate(envoy_http_local_rate_limit_ok[{RATE}]))", "ok"),
            Query(f"sum(rate(envoy_http_local_rate_limit_rate_limited[{RATE}]))", "limited"),
            unit="reqps", width=8))
        .with_panel(series("Rate-limit service check latency p99", Query(
            "histogram_quantile(0.99, sum by (le) (rate("
            f"ratelimit_service_response_time_seconds_bucket[{RATE}])))", "ShouldRateLimit"),
            unit="s", width=8, description="envoyproxy/ratelimit's own metrics (job ratelimit)."))
        .with_row(db.Row("Identity"))
        .with_panel(series("Logins/s", Query(
            f"sum by (outcome, reason) (rate(usdcarb_identity_logins_total[{RATE}]))",
            "{{outcome}} {{reason}}"), unit="ops"))
        .with_panel(series("Refusals/s", Query(
            f"sum by (action, reason) (rate(usdcarb_identity_refusals_total[{RATE}]))",
            "{{action}} {{reason}}"), unit="ops"))
    )


def notifications() -> db.Dashboard:
    return (
        _dashboard("usdcarb-notifications", "usdcarb / Notifications",
                   "Deliveries by outcome, the dead letter, the backlog and alerts received.")
        .with_panel(series("Delivery attempts/s by outcome", Query(
            f"sum by (outcome) (rate(usdcarb_notification_deliveries_total[{RATE}]))",
            "{{outcome}}"), unit="ops"))
        .with_panel(series("Dead letters and backlog", Query(
            "max(usdcarb_notification_dead_letters)", "dead letters"),
            Query("max(usdcarb_notification_pending)", "pending"),
            description="DeadLettersGrowing fires when deliveries keep dead-lettering."))
        .with_panel(series("Alerts received/s", Query(
            f"sum by (status) (rate(usdcarb_notification_alerts_received_total[{RATE}]))",
            "{{status}}"), unit="ops"))
        .with_panel(series("NotificationService unary latency p99", Query(
            "histogram_quantile(0.99, sum by (le, grpc_method) (rate("
            f'grpc_server_handling_seconds_bucket{{job="notification"}}[{RATE}])))',
            "{{grpc_method}}"), unit="s"))
    )


def dashboards() -> dict[str, db.Dashboard]:
    """Every dashboard by file stem."""
    return {"overview": overview(), "backtests": backtests(), "market-data": market_data(),
            "gateway": gateway(), "notifications": notifications()}


def build(board: db.Dashboard) -> model.Dashboard:
    """Build ``board`` with its panels (rows included) numbered 1, 2, ... in order, so
    every panel has a stable, unique id (links and provisioning refer to them)."""
    built = board.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built
