"""Build the pieces of the Envoy bootstrap: clusters, routes, JWT rules, HTTP filters.

Everything here is a pure function of a ``GatewayConfig`` and the API's services (see
``usdcarb.gateway.api``); ``usdcarb.gateway.config`` assembles the bootstrap. The
choices follow shared/notes/envoy.md; comments name the trap each one avoids.
"""

from __future__ import annotations

import base64
import ipaddress
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from usdcarb.gateway.api import Service, has_verb, template_regex
from usdcarb.platform import authz
from usdcarb.ratelimit.limits import DOMAIN, TIERS, Limit, Limits, tier_limits

if TYPE_CHECKING:
    from usdcarb.gateway.config import GatewayConfig, GatewayTls

__all__ = ["build_bootstrap", "local_limit_resources", "split_address"]

JWT_PROVIDER = "usdcarb"
RATELIMIT_DOMAIN = DOMAIN
LOCAL_CLUSTER = "gateway-replicas"
ERROR_DOMAIN = "usdcarb.dev"
# The per-caller buckets: one local_ratelimit filter per role tier, named LOCAL_RATELIMIT.<tier>.
LOCAL_RATELIMIT = "usdcarb.local_ratelimit"
LOCAL_LIMIT_TYPE = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
# What a local bucket's 429 says, set by its filter (so it follows a reloaded config), read
# by the local reply mappers and removed before the reply leaves: the limit's name, its
# "N requests per S s", and the whole google.rpc.Status (base64) for gRPC callers.
LIMIT_NAME_HEADER = "x-usdcarb-limit-name"
LIMIT_DESCRIPTION_HEADER = "x-usdcarb-limit-description"
LIMIT_STATUS_HEADER = "x-usdcarb-limit-status"
LIMIT_HEADERS = (LIMIT_NAME_HEADER, LIMIT_DESCRIPTION_HEADER, LIMIT_STATUS_HEADER)

# RPCs a caller uses to obtain a token (or the keys that verify one): no JWT required.
# Read from the role table every service enforces (usdcarb.platform.authz).
PUBLIC_METHODS = frozenset(
    m for m in authz.METHOD_ROLES if authz.is_public(m) and m not in authz.MESH_ONLY)
RBAC = "envoy.filters.http.rbac"
JWT_FILTER = "envoy.filters.http.jwt_authn"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)
# Set by Envoy only; a client-sent copy is dropped before any filter runs.
IDENTITY_HEADERS = ("x-jwt-payload", "x-jwt-sub", "x-jwt-roles", "x-usdcarb-tier")
GRPC_STATUS_HEADERS = ("grpc-status", "grpc-message")
HEADER_MUTATION = "envoy.filters.http.header_mutation"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# A REST caller of a server stream that accepts this gets Server-Sent Events; any other
# caller gets NDJSON.
SSE_ACCEPT = {"name": "accept", "string_match": {"contains": "text/event-stream"}}
LUA = "envoy.filters.http.lua"
# The raw JSON body of a REST request, base64, for the service's strict check
# (usdcarb.platform.strictjson): the transcoder drops unknown fields silently.
JSON_BODY_HEADER = "x-usdcarb-json-body"
# Largest REST JSON body the gateway accepts (413 above): it travels base64 in a header,
# which the services' gRPC metadata limit must hold (platform server settings).
MAX_JSON_BODY_BYTES = 256 * 1024
# gRPC metadata keys are [0-9a-z_.-] (HTTP/2 lowercases names); HTTP allows more ("!", "$",
# "~", ...), and the service's gRPC stack refuses such a request outright (INTERNAL, 500).
# Such headers mean nothing to the API, so they are dropped, as any unknown header is ignored.
DROP_BAD_HEADER_NAMES_LUA = """
local function drop_bad_header_names(handle)
  local bad = {}
  for key, _ in pairs(handle:headers()) do
    if string.sub(key, 1, 1) ~= ":" and string.find(key, "[^0-9a-z_.%-]") then
      bad[#bad + 1] = key
    end
  end
  for _, key in ipairs(bad) do handle:headers():remove(key) end
end
"""
# The caller's rate-limit tier, from the verified token only (jwt_authn's payload in dynamic
# metadata; a client-sent copy of the header is dropped before any filter runs): its
# highest role, or "default". Array claims reach headers only as base64 JSON, which a
# descriptor cannot match on, hence this step.
TIER_HEADER = "x-usdcarb-tier"
TIER_LUA = f"""
local RANK = {{viewer = 1, analyst = 2, trader = 3, admin = 4}}
local function set_tier(handle)
  local jwt = handle:streamInfo():dynamicMetadata():get("{JWT_FILTER}")
  if jwt == nil or jwt.jwt_payload == nil then return end
  local tier, rank = "default", 0
  local roles = jwt.jwt_payload.roles
  if type(roles) == "table" then
    for _, role in ipairs(roles) do
      local r = RANK[role]
      if r ~= nil and r > rank then tier, rank = role, r end
    end
  end
  handle:headers():replace("{TIER_HEADER}", tier)
end
"""
# A reply refused by the rate limit service gets the google.rpc.Status every rate-limited
# reply has (ErrorInfo RATE_LIMITED naming the limit, QuotaFailure, RetryInfo) and
# Retry-After: the JSON body for REST, grpc-status-details-bin for gRPC (protobuf written
# here by hand: five small messages). The limit's name and window come from the service's
# x-ratelimit-limit (name="..."), the delay from x-ratelimit-reset. Only routes with shared
# budgets run it (LuaPerRoute "limited*"): a response step on every route would cost every
# request; the local buckets' replies get the same details from the local reply mappers.
RATE_LIMITED_LUA = f"""
local function pb_varint(n)
  local out = {{}}
  repeat
    local byte = n % 128
    n = math.floor(n / 128)
    if n > 0 then byte = byte + 128 end
    out[#out + 1] = string.char(byte)
  until n == 0
  return table.concat(out)
end
local function pb_bytes(field, value)
  return pb_varint(field * 8 + 2) .. pb_varint(#value) .. value
end
local function pb_any(name, value)
  return pb_bytes(3, pb_bytes(1, "type.googleapis.com/google.rpc." .. name) .. pb_bytes(2, value))
end
local function json_text(value)
  return '"' .. string.gsub(value, '[%c"\\\\]', function(c)
    return string.format("\\\\u%04x", string.byte(c)) end) .. '"'
end
-- On routes with both limits both filters add x-ratelimit-*: keep the rate limit
-- service's (first, naming its limit), the scarcer budget of the two.
local function one_set_of_limit_headers(headers)
  if headers:getNumValues("x-ratelimit-limit") < 2 then return end
  for _, key in ipairs({{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}}) do
    local first = headers:getAtIndex(key, 0)
    if first ~= nil then headers:replace(key, first) end
  end
end
local function rate_limited(handle)
  local headers = handle:headers()
  one_set_of_limit_headers(headers)
  if headers:get("x-envoy-ratelimited") == nil then return end
  local limit_header = headers:get("x-ratelimit-limit") or ""
  local name = string.match(limit_header, 'name="([^"]+)"')
  if name == nil then return end  -- a local bucket's: the local reply mapper's details
  local allowed = string.match(limit_header, "^%s*(%d+)") or "?"
  local per = " per " .. (string.match(limit_header, "w=(%d+)") or "?") .. " s"
  local delay = math.max(1, tonumber(headers:get("x-ratelimit-reset") or "1") or 1)
  local description = allowed .. " requests" .. per
  local message = "expected at most " .. description .. " under limit " .. name ..
    ", got more; retry after " .. delay .. " s"
  headers:replace("retry-after", tostring(delay))
  local ctype = headers:get("content-type") or ""
  if string.sub(ctype, 1, 16) == "application/grpc" then
    local status = pb_varint(8) .. pb_varint(8) .. pb_bytes(2, message)
      .. pb_any("ErrorInfo", pb_bytes(1, "RATE_LIMITED") .. pb_bytes(2, "{ERROR_DOMAIN}")
        .. pb_bytes(3, pb_bytes(1, "limit") .. pb_bytes(2, name)))
      .. pb_any("QuotaFailure", pb_bytes(1, pb_bytes(1, name) .. pb_bytes(2, description)))
      .. pb_any("RetryInfo", pb_bytes(1, pb_varint(8) .. pb_varint(delay)))
    headers:replace("grpc-status", "8")
    headers:replace("grpc-message", message)
    headers:replace("grpc-status-details-bin", handle:base64Escape(status))
    return
  end
  local body = '{{"code":8,"message":' .. json_text(message) .. ',"details":['
    .. '{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMITED",'
    .. '"domain":"{ERROR_DOMAIN}","metadata":{{"limit":' .. json_text(name) .. '}}}},'
    .. '{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"subject":'
    .. json_text(name) .. ',"description":' .. json_text(description) .. '}}]}},'
    .. '{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"' .. delay .. 's"}}]}}'
  local buffered = handle:body()
  if buffered ~= nil then buffered:setBytes(body) end
  headers:replace("content-type", "application/json")
end
function envoy_on_response(handle)
  rate_limited(handle)
end
"""
NO_TIER_LUA = """
local function set_tier(handle) end
"""
HEADERS_ONLY_LUA = """
function envoy_on_request(handle)
  drop_bad_header_names(handle)
  set_tier(handle)
end
"""
JSON_BODY_LUA = f"""
function envoy_on_request(handle)
  drop_bad_header_names(handle)
  set_tier(handle)
  local headers = handle:headers()
  local ctype = headers:get("content-type") or ""
  if string.sub(ctype, 1, 16) == "application/grpc" then return end
  -- A body declared too large is left to the transcoder's own limit (413 while it reads);
  -- the service refuses a transcoded request that arrives without this header.
  local declared = tonumber(headers:get("content-length") or "0") or 0
  if declared > {MAX_JSON_BODY_BYTES} then return end
  local body = handle:body()
  if body == nil then
    handle:headers():replace("{JSON_BODY_HEADER}", "")
    return
  end
  if body:length() > {MAX_JSON_BODY_BYTES} then
    handle:respond({{[":status"] = "413"}},
      "expected a request body of at most {MAX_JSON_BODY_BYTES} bytes, got " .. body:length())
    return
  end
  -- The headers object taken before body() is stale once the body was awaited.
  handle:headers():replace("{JSON_BODY_HEADER}",
    handle:base64Escape(body:getBytes(0, body:length())))
end
"""


def split_address(address: str, *, what: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too); raise ValueError naming ``what`` if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port for {what}, got {address!r}")
    return host.strip("[]"), int(port)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _any(type_name: str, **body: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **body}


def split_addresses(addresses: str, *, what: str) -> list[tuple[str, int]]:
    """Split ``host:port[,host:port...]`` (the replicas of one backend) into pairs."""
    return [split_address(a.strip(), what=what) for a in addresses.split(",")]


def _cluster(name: str, address: str, *, http2: bool = True) -> dict[str, Any]:
    # Several comma-separated addresses: one endpoint per replica, round robin.
    hosts = split_addresses(address, what=f"cluster {name!r}")
    try:
        for host, _ in hosts:
            ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    cluster: dict[str, Any] = {
        "name": name,
        "type": kind,
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                        for host, port in hosts
                    ]
                }
            ],
        },
    }
    if kind == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            )
        }
    return cluster


def _backend_cluster(service: Service, address: str) -> dict[str, Any]:
    cluster = _cluster(service.short_name, address)
    # The default no_traffic_interval (60 s) would hide a dead backend on an idle gateway.
    cluster["health_checks"] = [
        {
            "timeout": "1s",
            "interval": "1s",
            "no_traffic_interval": "1s",
            # a host that failed a check, or is down, is probed four times as often: a
            # restarted replica takes requests within ~0.25 s of reporting SERVING
            "healthy_edge_interval": "0.25s",
            "unhealthy_edge_interval": "0.25s",
            "unhealthy_interval": "0.25s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            "grpc_health_check": {"service_name": service.full_name},
        }
    ]
    # Never send traffic to a host failing its health check (fail fast with 503); a
    # change of a host's health reaches the workers at once (Envoy merges the changes of
    # each 1 s by default, so a host back within a second of going down stayed out of
    # rotation for a second more).
    cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0},
                                   "update_merge_window": "0s"}
    return cluster


TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_PARAMS = {"tls_minimum_protocol_version": "TLSv1_2"}


def _certificate(cert_file: object, key_file: object) -> dict[str, Any]:
    return {"certificate_chain": {"filename": str(cert_file)},
            "private_key": {"filename": str(key_file)}}


def _downstream_tls(tls: GatewayTls) -> dict[str, Any]:
    """The listener's TLS: the gateway's certificate, TLS 1.2+, h2 and http/1.1 by ALPN
    (the connection manager's AUTO codec then serves REST and gRPC on one port)."""
    return {
        "name": TLS_SOCKET,
        "typed_config": _any(
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            common_tls_context={
                "tls_params": TLS_PARAMS,
                "tls_certificates": [_certificate(tls.cert_file, tls.key_file)],
                "alpn_protocols": ["h2", "http/1.1"],
            },
        ),
    }


def _upstream_mtls(tls: GatewayTls, peer: str) -> dict[str, Any]:
    """Mutual TLS to backend ``peer``: Envoy's client certificate, and the backend's
    certificate must chain to the CA and name ``peer`` (so one service's certificate
    does not pass for another's)."""
    return {
        "name": TLS_SOCKET,
        "typed_config": _any(
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            sni=peer,
            common_tls_context={
                "tls_params": TLS_PARAMS,
                "tls_certificates": [_certificate(tls.client_cert_file, tls.client_key_file)],
                "validation_context": {
                    "trusted_ca": {"filename": str(tls.ca_file)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": peer}}
                    ],
                },
                "alpn_protocols": ["h2"],
            },
        ),
    }


def _jwks_cluster(uri: str, ca_file: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) JWKS URI, got {uri!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cluster = _cluster("jwks", f"{parts.hostname}:{port}", http2=False)
    if parts.scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _any(
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                sni=parts.hostname,
                # Without a validation context Envoy would accept any certificate.
                common_tls_context={
                    "validation_context": {
                        "trusted_ca": {"filename": ca_file},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": parts.hostname}}
                        ],
                    }
                },
            ),
        }
    return cluster


def _method_header(verb: str) -> list[dict[str, Any]]:
    return [{"name": ":method", "string_match": {"exact": verb}}]


def _action(cfg: GatewayConfig, cluster: str, streaming: bool) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": cluster, "timeout": _seconds(cfg.unary_timeout_s)}
    if streaming:
        # The default 15 s route timeout would cut long streams (trap 6).
        action = {
            "cluster": cluster,
            "timeout": "0s",
            "idle_timeout": _seconds(cfg.stream_idle_timeout_s),
        }
    return _replica_retry(cfg, action)


def _replica_retry(cfg: GatewayConfig, action: dict[str, Any]) -> dict[str, Any]:
    """Add a retry to ``action`` when its cluster has several replicas: a request that
    never reached one (connection refused, a stream refused before it started) goes to
    another. Nothing that reached a service is retried, so the gateway never applies a
    write twice."""
    if "," in cfg.upstreams.get(action["cluster"], ""):
        action["retry_policy"] = {
            "retry_on": "connect-failure,refused-stream",
            "num_retries": 2,
            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                      "typed_config": _any(
                                          "envoy.extensions.retry.host.previous_hosts.v3"
                                          ".PreviousHostsPredicate")}],
            "host_selection_retry_max_attempts": 3,
        }
    return action


def _header_action(header: str, key: str) -> dict[str, Any]:
    return {"request_headers": {"header_name": header, "descriptor_key": key}}


def _generic(value: str) -> dict[str, Any]:
    return {"generic_key": {"descriptor_key": "class", "descriptor_value": value}}


def _rate_limits(key: str) -> list[dict[str, Any]] | None:
    """Return the descriptors the rate limit service gets for one method (see
    usdcarb.ratelimit.limits): the shared budgets only — per client IP on token endpoints,
    per subject and tier on backtests and sweeps. Every other route has none, so the
    ratelimit filter makes no call for it; ordinary budgets are Envoy's local buckets.
    The claim and tier headers are set before this filter runs (trap 11).
    """
    if key in authz.TOKEN_METHODS:
        return [{"actions": [_generic("auth"), {"remote_address": {}}]}]
    if key in authz.HEAVY_METHODS:
        return [{"actions": [_generic("heavy"), _header_action(TIER_HEADER, "tier"),
                             _header_action("x-jwt-sub", "sub")]}]
    return None


def _tier_bucket_config(limit: Limit | None, tier: str, *, max_dynamic_descriptors: int,
                        divided: bool) -> dict[str, Any]:
    """The LocalRateLimit of one tier's filter: a token bucket per subject of that tier,
    made on first use (dynamic descriptors: the ``sub`` entry has no value) and kept in an
    LRU of ``max_dynamic_descriptors``. An evicted caller starts again from a full bucket,
    so eviction can only let more through, never refuse more. A request of another tier
    (or without a token) yields no descriptor: this filter does nothing for it. A tier
    without a limit gets a filter that limits nothing.

    Its 429 carries the limit's facts in headers (LIMIT_HEADERS) that the local reply
    mappers turn into the google.rpc.Status details; they come with the config, so they
    change with it when the limits file changes (ECDS), and they leave with the reply
    (the header mutation filter removes them)."""
    hundred = {"numerator": 100, "denominator": "HUNDRED"}
    config: dict[str, Any] = {
        "stat_prefix": "http_local_rate_limiter",
        "filter_enabled": {"default_value": hundred, "runtime_key": "local_rate_limit_enabled"},
        "filter_enforced": {"default_value": hundred,
                            "runtime_key": "local_rate_limit_enforced"},
        # Else gRPC callers see UNAVAILABLE and retry.
        "rate_limited_as_resource_exhausted": True,
    }
    if limit is None:
        return config
    tokens = max(limit.requests_per_unit, 1)
    bucket = {"max_tokens": tokens, "tokens_per_fill": tokens,
              "fill_interval": _seconds(limit.seconds)}
    if limit.requests_per_unit == 0:
        bucket = {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "315360000s"}
    _, description, delay, grpc_details = _local_limit_reply(limit)  # message: the mappers'

    def header(key: str, value: str) -> dict[str, Any]:
        return {"header": {"key": key, "value": value},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}

    config.update({
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "response_headers_to_add": [
            header("x-envoy-ratelimited", "true"), header("retry-after", str(delay)),
            header(LIMIT_NAME_HEADER, limit.name),
            header(LIMIT_DESCRIPTION_HEADER, description),
            header(LIMIT_STATUS_HEADER, grpc_details)],
        "max_dynamic_descriptors": max_dynamic_descriptors,
        "descriptors": [{"entries": [{"key": "tier", "value": tier}, {"key": "sub"}],
                         "token_bucket": bucket}],
        # Only this tier's requests get a descriptor (and so a bucket).
        "rate_limits": [{"actions": [
            {"header_value_match": {
                "descriptor_key": "tier", "descriptor_value": tier, "expect_match": True,
                "headers": [{"name": TIER_HEADER, "string_match": {"exact": tier}}]}},
            {"request_headers": {"header_name": "x-jwt-sub", "descriptor_key": "sub"}},
        ]}],
    })
    if divided:
        config["local_cluster_rate_limit"] = {}
    return config


def local_limit_filter_name(tier: str) -> str:
    """Return the name of ``tier``'s local_ratelimit filter (and of its ECDS resource)."""
    return f"{LOCAL_RATELIMIT}.{tier}"


def local_limit_configs(limits: Limits, *, max_dynamic_descriptors: int,
                        divided: bool) -> dict[str, dict[str, Any]]:
    """Return every tier's LocalRateLimit (as an ``Any``), by tier: the per-caller budgets
    (limits file, ``api``), one filter per tier so that each 429 names its own limit."""
    by_tier = tier_limits(limits.api)
    return {tier: _any(LOCAL_LIMIT_TYPE, **_tier_bucket_config(
        by_tier.get(tier), tier, max_dynamic_descriptors=max_dynamic_descriptors,
        divided=divided)) for tier in TIERS}


def local_limit_resources(limits: Limits, *, max_dynamic_descriptors: int,
                          divided: bool) -> dict[str, dict[str, Any]]:
    """Return the ECDS documents the gateway watches (``local_limits_dir``), by file name:
    one DiscoveryResponse per tier, holding that tier's filter config."""
    return {
        f"{tier}.yaml": {"resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": local_limit_filter_name(tier), "typed_config": config}]}
        for tier, config in local_limit_configs(
            limits, max_dynamic_descriptors=max_dynamic_descriptors, divided=divided).items()
    }


def _local_ratelimits(cfg: GatewayConfig) -> list[dict[str, Any]]:
    """Envoy's own token buckets for the ordinary budget, one filter per tier. With
    ``cfg.local_limits_dir`` each filter's config comes from a file there (ECDS, see
    ``local_limit_resources``): Envoy watches the folder for files moved into it (an
    atomic rename, or a ConfigMap's symlink swap) and applies a changed config without a
    restart; until a file is read, and if one is unusable, the limits given here apply.
    Buckets belong to one Envoy process; with ``cfg.local_cluster`` each replica enforces
    its share (the limit divided by the healthy gateways it sees)."""
    configs = local_limit_configs(cfg.limits, max_dynamic_descriptors=cfg.max_dynamic_descriptors,
                                  divided=cfg.local_cluster is not None)
    filters = []
    for tier, config in configs.items():
        name = local_limit_filter_name(tier)
        if cfg.local_limits_dir is None:
            filters.append({"name": name, "typed_config": config})
            continue
        folder = cfg.local_limits_dir.rstrip("/")
        filters.append({"name": name, "config_discovery": {
            "config_source": {
                "path_config_source": {"path": f"{folder}/{tier}.yaml",
                                       "watched_directory": {"path": folder}},
                "resource_api_version": "V3"},
            "default_config": config,
            "apply_default_config_without_warming": True,
            "type_urls": [f"type.googleapis.com/{LOCAL_LIMIT_TYPE}"]}})
    return filters


def _lua_source(name: str) -> dict[str, Any]:
    """The Lua step's per-route script: ``json_body`` (hand the REST body on), ``limited``
    (details for the rate limit service's 429s), or ``limited_json_body`` (both)."""
    return _any("envoy.extensions.filters.http.lua.v3.LuaPerRoute", name=name)


def _role_policy(key: str) -> dict[str, Any] | None:
    """Return the per-route RBAC config allowing the roles the table allows for ``key``.

    The roles come from the verified token (jwt_authn's payload in dynamic metadata),
    never from a header a client could send.
    """
    if key not in authz.METHOD_ROLES or authz.is_public(key):
        return None
    principals = [
        {"sourced_metadata": {"metadata_matcher": {
            "filter": JWT_FILTER,
            "path": [{"key": "jwt_payload"}, {"key": "roles"}],
            "value": {"list_match": {"one_of": {"string_match": {"exact": role}}}},
        }}}
        for role in authz.ROLES if role in authz.allowed_roles(key)
    ]
    return _any(
        "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        rbac={"rules": {"action": "ALLOW", "policies": {
            f"role>={authz.minimum_role(key)}": {
                "permissions": [{"any": True}],
                "principals": [{"or_ids": {"ids": principals}}],
            }}}},
    )


def _routes(cfg: GatewayConfig, services: Sequence[Service]) -> list[dict[str, Any]]:
    grpc_routes: list[dict[str, Any]] = []
    rest_routes: list[tuple[bool, dict[str, Any]]] = []
    limited = cfg.ratelimit_address is not None and cfg.rate_limiting
    sse_transcoder = _transcoder(cfg, services, sse=True)
    for svc in services:
        for method in svc.methods:
            key = f"{svc.full_name}/{method.name}"
            if key in authz.MESH_ONLY:
                continue  # services call it inside the mesh; the edge never routes it
            limits = _rate_limits(key) if limited else None
            policy = _role_policy(key) if cfg.route_authorization else None
            streaming = method.server_streaming or method.client_streaming
            action = _action(cfg, svc.short_name, streaming)
            if not streaming:
                # Honour the caller's grpc-timeout, capped by the route timeout.
                action = {
                    **action,
                    "max_stream_duration": {"grpc_timeout_header_max": action["timeout"]},
                }
            route: dict[str, Any] = {
                "name": f"grpc:{key}",
                "match": {"path": svc.grpc_path(method), "grpc": {}},
                "route": action,
            }
            grpc_filters: dict[str, Any] = {}
            if limits:
                route["route"] = {**route["route"], "rate_limits": limits}
                grpc_filters[LUA] = _lua_source("limited")
            if policy:
                grpc_filters[RBAC] = policy
            if grpc_filters:
                route["typed_per_filter_config"] = grpc_filters
            grpc_routes.append(route)
            for i, rule in enumerate(method.http_rules):
                rest_action = _action(cfg, svc.short_name, streaming)
                if limits:
                    rest_action["rate_limits"] = limits
                per_filter: dict[str, Any] = {HEADER_MUTATION: _strip_grpc_status()}
                if rule.body or limits:
                    source = "json_body" if rule.body else ""
                    per_filter[LUA] = _lua_source(
                        "_".join(filter(None, ("limited" if limits else "", source))))
                if policy:
                    per_filter[RBAC] = policy
                name = f"rest:{key}" + (f"#{i}" if i else "")
                match = {"safe_regex": {"regex": template_regex(rule.template)},
                         "headers": _method_header(rule.method)}
                if method.server_streaming:
                    # The same route for SSE callers, first so that it wins; the
                    # transcoder's per-route config switches the framing.
                    rest_routes.append((has_verb(rule.template), {
                        "name": f"{name}:sse",
                        "match": {**match, "headers": [*match["headers"], SSE_ACCEPT]},
                        "route": rest_action,
                        "typed_per_filter_config": {
                            **per_filter, TRANSCODER: sse_transcoder},
                    }))
                rest_routes.append((has_verb(rule.template), {
                    "name": name, "match": match, "route": rest_action,
                    "typed_per_filter_config": per_filter,
                }))
    # A "*" segment may contain ":", so "/v1/backtests/x:watch" also matches the
    # GetBacktest template: verb routes go first (sorted() is stable).
    ordered_rest = [route for _, route in sorted(rest_routes, key=lambda item: not item[0])]
    extra: list[dict[str, Any]] = []
    if cfg.introspection_backend is not None:
        backend = cfg.introspection_backend
        for prefix in REFLECTION_PREFIXES:
            extra.append(
                {
                    "name": f"grpc:{prefix.strip('/')}",
                    "match": {"prefix": prefix, "grpc": {}},
                    "route": _replica_retry(cfg, {"cluster": backend, "timeout": "0s",
                                                  "idle_timeout": "300s"}),
                }
            )
        extra.append(
            {
                "name": "grpc:grpc.health.v1.Health",
                "match": {"prefix": HEALTH_PREFIX, "grpc": {}},
                "route": _replica_retry(cfg, {"cluster": backend, "timeout": "0s",
                                              "idle_timeout": "300s"}),
            }
        )
    preflight: list[dict[str, Any]] = []
    if cfg.cors_allowed_origins:
        # REST routes match on their method, so OPTIONS would find no route and the cors
        # filter no policy. The cors filter answers preflights from allowed origins on
        # this route; it ignores direct_response routes, hence a cluster that other
        # preflights reach only as far as the transcoder (404).
        preflight.append(
            {
                "name": "cors-preflight",
                "match": {"prefix": "/", "headers": _method_header("OPTIONS")},
                "route": {"cluster": services[0].short_name, "timeout": "5s"},
            }
        )
    return preflight + grpc_routes + extra + ordered_rest


def _jwt_rules(services: Sequence[Service]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for svc in services:
        for method in svc.methods:
            if f"{svc.full_name}/{method.name}" not in PUBLIC_METHODS:
                continue
            rules.append({"match": {"path": svc.grpc_path(method)}})
            for rule in method.http_rules:
                rules.append(
                    {
                        "match": {
                            "safe_regex": {"regex": template_regex(rule.template)},
                            "headers": _method_header(rule.method),
                        }
                    }
                )
    rules.append({"match": {"prefix": HEALTH_PREFIX}})
    # Reflection is public like health (the API's shape is no secret: the OpenAPI document
    # is published too), so `grpcurl <gateway> list|describe` works before a login.
    rules += [{"match": {"prefix": prefix}} for prefix in REFLECTION_PREFIXES]
    # Everything else, including paths no route serves, needs a valid token.
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}})
    return rules


def _jwt_filter(cfg: GatewayConfig, services: Sequence[Service]) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "issuer": cfg.jwt_issuer,
        "audiences": list(cfg.jwt_audiences),
        # Zero trust inside: each service verifies the original token again, so it is
        # forwarded; no claims header is (services would never trust one).
        "forward": True,
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "payload_in_metadata": "jwt_payload",
        "claim_to_headers": [
            {"header_name": "x-jwt-sub", "claim_name": "sub"},
            {"header_name": "x-jwt-roles", "claim_name": "roles"},
        ],
        "clock_skew_seconds": cfg.clock_skew_s,
        "jwt_cache_config": {"jwt_cache_size": 1000},
    }
    if cfg.jwks_mode == "local":
        provider["local_jwks"] = {"filename": str(cfg.jwks_file)}
    else:
        assert cfg.jwks_uri is not None
        provider["remote_jwks"] = {
            "http_uri": {"uri": cfg.jwks_uri, "cluster": "jwks", "timeout": "2s"},
            "cache_duration": _seconds(cfg.jwks_cache_duration_s),
            # Don't hold the listener until the first fetch: the JWKS may be served through
            # this very listener (identity's GetJwks); a failed fetch is retried after 1 s.
            "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
            "retry_policy": {"num_retries": 3},
        }
    return {
        "name": JWT_FILTER,
        "typed_config": _any(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={JWT_PROVIDER: provider},
            rules=_jwt_rules(services),
            bypass_cors_preflight=True,
        ),
    }


def _strip_grpc_status() -> dict[str, Any]:
    # REST responses would carry grpc-status/grpc-message headers (trap 8); the HTTP status
    # and JSON body already say how the call ended. Route-level response_headers_to_remove
    # cannot do this: it runs before the transcoder, which adds these headers from the
    # trailers (and removing them that early hides errors: an UNIMPLEMENTED became a 200).
    return _any(
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        mutations={"response_mutations": [{"remove": h} for h in GRPC_STATUS_HEADERS]},
    )


def _transcoder(cfg: GatewayConfig, services: Sequence[Service], *,
                sse: bool = False) -> dict[str, Any]:
    """The transcoder's config: server streams as NDJSON, or as SSE events with ``sse``."""
    framing = {"stream_sse_style_delimited": True} if sse else {"stream_newline_delimited": True}
    return _any(
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=str(cfg.descriptor_path),
        services=[svc.full_name for svc in services],
        convert_grpc_status=True,
        match_incoming_request_route=True,
        # Bodies past the strict check's limit end here (413), read incrementally.
        max_request_body_size=MAX_JSON_BODY_BYTES,
        request_validation_options={
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
        },
        print_options={
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": False,
            **framing,
        },
    )


def _http_filters(cfg: GatewayConfig, services: Sequence[Service]) -> list[dict[str, Any]]:
    # First in the list so that, encoding in reverse order, it sees responses last,
    # after the transcoder. It does nothing except on routes that configure it.
    filters: list[dict[str, Any]] = [
        {
            "name": HEADER_MUTATION,
            # The local buckets' facts for the 429 mappers never leave the gateway.
            "typed_config": _any(
                "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                mutations={"response_mutations": [{"remove": h} for h in LIMIT_HEADERS]}),
        }
    ]
    if cfg.cors_allowed_origins:
        filters.append(
            {
                "name": "envoy.filters.http.cors",
                "typed_config": _any("envoy.extensions.filters.http.cors.v3.Cors"),
            }
        )
    filters.append(_jwt_filter(cfg, services))
    if cfg.route_authorization:
        # No rules here: only routes with a per-route policy (the role table) are checked.
        filters.append({
            "name": RBAC,
            "typed_config": _any("envoy.extensions.filters.http.rbac.v3.RBAC"),
        })
    # Every request drops header names gRPC cannot carry and gets its rate-limit tier;
    # REST routes with a body also hand the raw body on (LuaPerRoute "json_body"). Before
    # the rate limit filters: their 429s pass its response step on the way out, which
    # gives them their details.
    # Without rate limiting (a baseline for the benchmark) there is no tier and no 429.
    common = DROP_BAD_HEADER_NAMES_LUA + (TIER_LUA if cfg.rate_limiting else NO_TIER_LUA)
    limited = common + RATE_LIMITED_LUA
    filters.append({
        "name": LUA,
        "typed_config": _any(
            "envoy.extensions.filters.http.lua.v3.Lua",
            default_source_code={"inline_string": common + HEADERS_ONLY_LUA},
            source_codes={
                "json_body": {"inline_string": common + JSON_BODY_LUA},
                "limited": {"inline_string": limited + HEADERS_ONLY_LUA},
                "limited_json_body": {"inline_string": limited + JSON_BODY_LUA},
            },
        ),
    })
    if cfg.rate_limiting:
        filters.extend(_local_ratelimits(cfg))
    if cfg.ratelimit_address is not None and cfg.rate_limiting:
        filters.append(
            {
                "name": "envoy.filters.http.ratelimit",
                "typed_config": _any(
                    "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                    domain=RATELIMIT_DOMAIN,
                    timeout=f"{cfg.ratelimit_timeout_ms / 1000:g}s",
                    failure_mode_deny=cfg.ratelimit_failure_mode_deny,
                    # Else gRPC callers see UNAVAILABLE on 429 and retry.
                    rate_limited_as_resource_exhausted=True,
                    enable_x_ratelimit_headers="DRAFT_VERSION_03",
                    rate_limit_service={
                        "grpc_service": {"envoy_grpc": {"cluster_name": "ratelimit"}},
                        "transport_api_version": "V3",
                    },
                ),
            }
        )
    filters.append({"name": TRANSCODER, "typed_config": _transcoder(cfg, services)})
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": _any("envoy.extensions.filters.http.router.v3.Router"),
        }
    )
    return filters


ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%",
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "route": "%ROUTE_NAME%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "sub": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:sub)%",
}


def _access_log(cfg: GatewayConfig) -> list[dict[str, Any]]:
    log_format = {"json_format": ACCESS_LOG_FORMAT}
    if cfg.access_log_path is None:
        return [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": _any(
                    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    log_format=log_format,
                ),
            }
        ]
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": _any(
                "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                path=cfg.access_log_path,
                log_format=log_format,
            ),
        }
    ]


# Envoy's own replies (malformed JSON, jwt_authn, rbac, no route, body too large, rate
# limits, no healthy upstream) as the google.rpc.Status JSON every other REST error has,
# with ErrorInfo; gRPC callers keep grpc-status. HTTP status: (gRPC code, ErrorInfo reason).
LOCAL_REPLY_CODES = {
    400: (3, "GATEWAY_BAD_REQUEST"), 401: (16, "UNAUTHENTICATED"), 403: (7, "PERMISSION_DENIED"),
    404: (5, "NOT_FOUND"), 405: (12, "METHOD_NOT_ALLOWED"), 408: (4, "REQUEST_TIMEOUT"),
    413: (3, "REQUEST_TOO_LARGE"), 429: (8, "RATE_LIMITED"), 431: (3, "HEADERS_TOO_LARGE"),
    500: (13, "GATEWAY_INTERNAL"), 502: (14, "BAD_GATEWAY"), 503: (14, "UNAVAILABLE"),
    504: (4, "GATEWAY_TIMEOUT"),
}
# Replies Envoy sends with an empty body, by %RESPONSE_CODE_DETAILS%: (gRPC code,
# ErrorInfo reason, the message instead), so that a Status message is never empty.
LOCAL_REPLY_TEXTS = {
    "path_normalization_failed": (3, "INVALID_PATH", "expected a request path without NUL, "
                                  "escaped slashes or dot segments above the root"),
    "route_not_found": (5, "NOT_FOUND",
                        "expected a path and method the API serves, got none that matches"),
    "request_headers_too_large": (3, "HEADERS_TOO_LARGE",
                                  "expected request headers within the gateway's limit"),
    # Not empty, but they name Envoy's buffers rather than the limit a caller can act on.
    "grpc_json_transcode_failure{request_buffer_size_limit_reached}": (
        3, "REQUEST_TOO_LARGE",
        f"expected a request body of at most {MAX_JSON_BODY_BYTES} bytes, got more"),
    "request_payload_too_large": (
        3, "REQUEST_TOO_LARGE",
        f"expected a request body of at most {MAX_JSON_BODY_BYTES} bytes, got more"),
}

def _local_limit_reply(limit: Limit) -> tuple[str, str, int, str]:
    """Return what a local bucket's 429 says: message, quota description, retry delay (s)
    and the gRPC ``grpc-status-details-bin`` value. Buckets refill continuously, so the
    next request fits after one token's time, unit / requests_per_unit (at least 1 s)."""
    description = f"{limit.requests_per_unit} requests per {limit.seconds} s"
    delay = max(1, math.ceil(limit.seconds / max(limit.requests_per_unit, 1)))
    message = (f"expected at most {description} under limit {limit.name}, got more; "
               f"retry after {delay} s")
    status = status_pb2.Status(code=8, message=message)
    for detail in (
        error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain=ERROR_DOMAIN,
                                    metadata={"limit": limit.name}),
        error_details_pb2.QuotaFailure(violations=[error_details_pb2.QuotaFailure.Violation(
            subject=limit.name, description=description)]),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=delay)),
    ):
        status.details.add().Pack(detail)
    return message, description, delay, base64.b64encode(status.SerializeToString()).decode()


def _local_reply_config(cfg: GatewayConfig) -> dict[str, Any]:
    def is_rest() -> dict[str, Any]:
        # Not gRPC: no gRPC content-type (a GET has none: count a missing header as "",
        # which is not gRPC), or transcoded already (the transcoder rewrote content-type
        # to gRPC and set x-envoy-original-path, which Envoy strips from clients).
        grpc_type = {"header_filter": {"header": {
            "name": "content-type", "string_match": {"prefix": "application/grpc"},
            "invert_match": True, "treat_missing_header_as_empty": True}}}
        transcoded = {"header_filter": {"header": {
            "name": "x-envoy-original-path", "present_match": True}}}
        return {"or_filter": {"filters": [grpc_type, transcoded]}}

    def status_is(status: int) -> dict[str, Any]:
        return {"status_code_filter": {"comparison": {
            "op": "EQ", "value": {"default_value": status, "runtime_key": f"lr_{status}"}}}}

    def details_are(details: str) -> dict[str, Any]:
        return {"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": _any(
                "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                expression=f"response.code_details == '{details}'")}}

    def body(code: int, reason: str, *extra: dict[str, Any]) -> dict[str, Any]:
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                "domain": ERROR_DOMAIN, "metadata": {"details": "%RESPONSE_CODE_DETAILS%"}}
        return {"json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%",
                                "details": [info, *extra]},
                "content_type": "application/json"}

    # A local bucket's 429: the same google.rpc.Status as the rate limit service's
    # (RATE_LIMITED_LUA writes those), as JSON for REST and as grpc-status-details-bin for
    # gRPC, from the facts the refusing tier's filter set (LIMIT_HEADERS, Retry-After):
    # they follow that filter's config when the limits file changes.
    mappers: list[dict[str, Any]] = []
    grpc_call = {"and_filter": {"filters": [
        {"header_filter": {"header": {"name": "content-type",
                                      "string_match": {"prefix": "application/grpc"}}}},
        {"header_filter": {"header": {"name": "x-envoy-original-path", "present_match": True,
                                      "invert_match": True}}}]}}
    if cfg.rate_limiting:
        name, description = f"%RESP({LIMIT_NAME_HEADER})%", f"%RESP({LIMIT_DESCRIPTION_HEADER})%"
        delay = "%RESP(retry-after)%"
        message = (f"expected at most {description} under limit {name}, got more; "
                   f"retry after {delay} s")  # as _local_limit_reply says it
        # Only the tiers' filters refuse with these details, and each one that can refuse
        # sets the headers.
        local = [status_is(429), details_are("local_rate_limited")]
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMITED",
                "domain": ERROR_DOMAIN, "metadata": {"limit": name}}
        quota = {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"subject": name, "description": description}]}
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"}
        mappers.append({
            "filter": {"and_filter": {"filters": [is_rest(), *local]}},
            "body_format_override": {
                "json_format": {"code": 8, "message": message, "details": [info, quota, retry]},
                "content_type": "application/json"},
        })
        mappers.append({
            "filter": {"and_filter": {"filters": [grpc_call, *local]}},
            # grpc-message
            "body_format_override": {"text_format_source": {"inline_string": message}},
            "headers_to_add": [{
                "header": {"key": "grpc-status-details-bin",
                           "value": f"%RESP({LIMIT_STATUS_HEADER})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        })
    for details, (code, reason, text) in LOCAL_REPLY_TEXTS.items():
        mappers.append({
            "filter": {"and_filter": {"filters": [is_rest(), details_are(details)]}},
            "body": {"inline_string": text},
            "body_format_override": body(code, reason),
        })
    mappers.extend(
        {"filter": {"and_filter": {"filters": [is_rest(), status_is(status)]}},
         "body_format_override": body(code, reason)}
        for status, (code, reason) in LOCAL_REPLY_CODES.items()
    )
    mappers.append({"filter": is_rest(), "body_format_override": body(2, "GATEWAY_ERROR")})
    return {"mappers": mappers}


def _connection_manager(cfg: GatewayConfig, services: Sequence[Service]) -> dict[str, Any]:
    virtual_host: dict[str, Any] = {
        "name": "usdcarb",
        "domains": ["*"],
        "routes": _routes(cfg, services),
    }
    if cfg.cors_allowed_origins:
        virtual_host["typed_per_filter_config"] = {
            "envoy.filters.http.cors": _any(
                "envoy.extensions.filters.http.cors.v3.CorsPolicy",
                allow_origin_string_match=[{"exact": o} for o in cfg.cors_allowed_origins],
                allow_methods="GET, POST, PATCH, DELETE, OPTIONS",
                allow_headers="authorization, content-type, x-request-id",
                expose_headers="x-request-id, x-ratelimit-limit, x-ratelimit-remaining, "
                "x-ratelimit-reset",
                max_age="600",
            )
        }
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": _any(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix="ingress",
            codec_type="AUTO",
            http_protocol_options={"enable_trailers": True},
            use_remote_address=True,
            # Keep a caller's x-request-id (SDK/CLI) so its logs and ours correlate;
            # Envoy generates one when absent.
            preserve_external_request_id=True,
            normalize_path=True,
            merge_slashes=True,
            path_with_escaped_slashes_action="REJECT_REQUEST",
            # Drop client-sent identity headers before routing and every filter, so only
            # jwt_authn can set them — on public routes too, where it sets nothing.
            early_header_mutation_extensions=[
                {
                    "name": "envoy.http.early_header_mutation.header_mutation",
                    "typed_config": _any(
                        "envoy.extensions.http.early_header_mutation.header_mutation.v3"
                        ".HeaderMutation",
                        mutations=[{"remove": h} for h in (*IDENTITY_HEADERS, JSON_BODY_HEADER)],
                    ),
                }
            ],
            access_log=_access_log(cfg),
            local_reply_config=_local_reply_config(cfg),
            route_config={"name": "usdcarb", "virtual_hosts": [virtual_host]},
            http_filters=_http_filters(cfg, services),
        ),
    }


def build_bootstrap(cfg: GatewayConfig, services: Sequence[Service]) -> dict[str, Any]:
    """Return the Envoy bootstrap for ``cfg`` serving ``services``."""
    missing = sorted({svc.short_name for svc in services} - set(cfg.upstreams))
    if missing:
        raise ValueError(f"expected an upstream address for every service, got none for {missing}")
    if cfg.introspection_backend is not None and cfg.introspection_backend not in cfg.upstreams:
        raise ValueError(
            f"expected introspection_backend among {sorted(cfg.upstreams)}, "
            f"got {cfg.introspection_backend!r}"
        )
    clusters = [_backend_cluster(svc, cfg.upstreams[svc.short_name]) for svc in services]
    if cfg.jwks_mode == "remote":
        assert cfg.jwks_uri is not None
        clusters.append(_jwks_cluster(cfg.jwks_uri, str(cfg.jwks_ca_file)))
    if cfg.ratelimit_address is not None:
        clusters.append(_cluster("ratelimit", cfg.ratelimit_address))
    if cfg.local_cluster is not None:
        # Every gateway replica (a headless Service): local_cluster_rate_limit divides the
        # per-caller limits by the healthy hosts of this cluster.
        clusters.append(_cluster(LOCAL_CLUSTER, cfg.local_cluster, http2=False))
    listener_tls: dict[str, Any] = {}
    if cfg.tls is not None:
        listener_tls["transport_socket"] = _downstream_tls(cfg.tls)
        if cfg.tls.upstream_mtls:
            meshed = {svc.short_name for svc in services} | {"ratelimit"}
            for cluster in clusters:
                if cluster["name"] in meshed:
                    cluster["transport_socket"] = _upstream_mtls(cfg.tls, cluster["name"])
    bootstrap: dict[str, Any] = {
        "node": {"id": "usdcarb-gateway", "cluster": "usdcarb-gateway"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": cfg.admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {
                        "socket_address": {
                            "address": cfg.listen_host,
                            "port_value": cfg.listen_port,
                        }
                    },
                    "filter_chains": [
                        {"filters": [_connection_manager(cfg, services)], **listener_tls}
                    ],
                }
            ],
            "clusters": clusters,
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": _any(
                        "envoy.extensions.resource_monitors.downstream_connections.v3"
                        ".DownstreamConnectionsConfig",
                        max_active_downstream_connections=10000,
                    ),
                }
            ]
        },
    }
    if cfg.local_cluster is not None:
        bootstrap["cluster_manager"] = {"local_cluster_name": LOCAL_CLUSTER}
    return bootstrap
