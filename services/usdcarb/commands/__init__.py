"""The subcommands of the ``usdcarb`` CLI, one module per area, on the Python SDK.

``common`` holds what they share (connection options, output, progress, exit codes).
"""
