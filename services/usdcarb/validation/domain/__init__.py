"""Pure validation domain: rules, gaps, fills and quality (numpy/pandas, no I/O)."""
