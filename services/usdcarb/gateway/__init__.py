"""Render the Envoy gateway's configuration and mint local development tokens.

``config`` turns the API's descriptor set (gen/descriptor/usdcarb.binpb) into an Envoy
bootstrap; ``devtoken`` signs tokens with the committed DEV-ONLY key until the identity
service issues real ones.
"""
