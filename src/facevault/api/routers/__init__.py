"""One router per resource; each endpoint is parse -> one Vault call (in a worker thread) -> reply."""
