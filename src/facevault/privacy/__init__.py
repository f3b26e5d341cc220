"""Privacy machinery: template protection keys, retention policy, the processing record."""
