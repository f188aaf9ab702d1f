"""docqa core: settings, errors, domain types, task names and ports."""
