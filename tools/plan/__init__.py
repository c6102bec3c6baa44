"""Pure engines over prepared values: estimate, optimize, worst case, checkpoints, remediation, pre-flight data checks."""
